"""`type: human`: a person's words about the stage's images, read from a file the run board writes."""

from __future__ import annotations

from pathlib import Path

from agent.human_feedback import wait_for_human_feedback
from agent.options import number, read_options
from agent.record import ExpertInfo
from agent.stage_files import FEEDBACK, RATINGS, WAITING, stage_dir
from lossagent_errors import OptionError

from ..stage_images import write_outputs
from .base import Expert, register_expert

HUMAN_DEFAULTS = {'timeout_s': 0.0, 'poll_s': 1.0, 'file': None}


@register_expert('human')
class HumanExpert(Expert):
    """A person's words: the stage's images are written out, feedback is read from a file.

    `experiments/<name>/agent/stage_<k>/` receives the restorations; text dropped into its
    `feedback.txt` (or into `file`) within `timeout_s` seconds goes to the agent for every
    image, with the image's 1-5 rating from `ratings.json` when there is one (the run board
    writes both). An unattended run waits at most `timeout_s` (0: look once, never wait);
    while it waits, `waiting.json` says until when (the board shows the countdown).
    """

    kind = 'text'

    def __init__(self, info: ExpertInfo, opt: dict, device):
        super().__init__(info)
        o = self._options(info.name, opt)
        self.timeout_s, self.poll_s, self.file = o['timeout_s'], o['poll_s'], o['file']

    @staticmethod
    def _options(name: str, opt: dict) -> dict:
        prefix = f'agent.experts.{name}'
        o = read_options(opt, HUMAN_DEFAULTS, prefix)
        o['timeout_s'] = number(o, 'timeout_s', 0, 10**7, prefix=prefix)
        o['poll_s'] = number(o, 'poll_s', 0.01, 3600, prefix=prefix)
        if o['file'] is not None and not isinstance(o['file'], str):
            raise OptionError(f'{prefix}.file: got {o["file"]!r}; expected a path or null')
        return o

    @classmethod
    def check_options(cls, name: str, opt: dict) -> ExpertInfo:
        cls._options(name, opt)
        return ExpertInfo(str(name), False, 'text')

    def score(self, outputs, gts, context):
        folder = stage_dir(context['agent_dir'], context['stage'])
        write_outputs(folder, list(context['names']), outputs)
        paths = [folder / FEEDBACK] + ([Path(self.file)] if self.file else [])
        feedback = wait_for_human_feedback(
            paths,
            folder / RATINGS,
            timeout_s=self.timeout_s,
            poll_s=self.poll_s,
            waiting_path=folder / WAITING,
            notice={'expert': self.name, 'stage': int(context['stage']), 'images': len(outputs)},
        )
        return [feedback.for_image(i) if feedback else None for i in range(len(outputs))]
