"""Experts: score the network's restorations of the agent's validation images.

YAML (`agent.experts`), a mapping of the name the LLM sees to its options:

    experts:
      NIQE: {metric: niqe}                       # any pyiqa metric; direction from pyiqa
      PSNR: {metric: psnr, test_y_channel: true, crop_border: 4}   # full-reference: uses the GT
      Q-Align: {metric: qalign, lower_better: false}               # direction overridable

Keys other than `type`, `metric` and `lower_better` go to `pyiqa.create_metric` (and must be
keywords the metric takes). Metric objects are created once per run. A new kind of expert is a
class registered with `@register_expert('kind')`; its `check_options(name, opt)` validates the
options without building anything (the start-up check runs it before any folder is made).

Text experts put words in the prompt where a score would be:

      Critic: {type: critique, base_url: http://127.0.0.1:8001/v1, model: Qwen/Qwen2.5-VL-7B-Instruct}
      Human:  {type: human, timeout_s: 0, file: ~}   # reads experiments/<name>/agent/stage_<k>/feedback.txt
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import torch

from agent.llm.critique import Critic, check_critique_options
from agent.experts import expert_weight
from agent.human_feedback import wait_for_human_feedback
from agent.options import number, read_options
from agent.record import ExpertInfo
from agent.stage_files import FEEDBACK, RATINGS, WAITING, stage_dir
from lossagent_errors import OptionError

from .iqa_metrics import check_metric_options, create_iqa_metric, lower_is_better
from .stage_images import png_bytes, write_outputs
from .validation_set import equal_runs

EXPERT_TYPES: dict[str, Callable] = {}


def register_expert(name: str):
    def wrap(cls):
        EXPERT_TYPES[name] = cls
        return cls
    return wrap


class Expert:
    """Scores a batch of restored images; one value per image (None when invalid)."""
    kind = 'score'

    def __init__(self, name: str, lower_better: bool, weight: float = 1.0):
        self.name = name
        self.lower_better = lower_better
        self.weight = weight

    @property
    def info(self) -> ExpertInfo:
        return ExpertInfo(self.name, self.lower_better, self.kind, self.weight)

    @classmethod
    def check_options(cls, name: str, opt: dict) -> ExpertInfo:
        """Validate `opt` without building anything; what a policy will know about this expert."""
        raise NotImplementedError

    def score(self, outputs: list[torch.Tensor], gts: list[torch.Tensor], context: dict) -> list:
        raise NotImplementedError


def _finite_or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


@register_expert('iqa')
class IQAExpert(Expert):
    """A pyiqa metric; full-reference metrics compare with the ground truth."""

    def __init__(self, name: str, opt: dict, device):
        info = self.check_options(name, opt)
        opt = dict(opt)
        metric = opt.pop('metric')
        override = opt.pop('lower_better', None)
        opt.pop('weight', None)
        self.metric = create_iqa_metric(metric, device=device, owner=f'agent.experts.{name}', **opt)
        lower = override if override is not None else bool(getattr(self.metric, 'lower_better', info.lower_better))
        super().__init__(name, lower, info.weight)
        self.metric_name = metric
        self.full_reference = getattr(self.metric, 'metric_mode', 'NR') == 'FR'

    @classmethod
    def check_options(cls, name: str, opt: dict) -> ExpertInfo:
        opt = dict(opt)
        metric = opt.pop('metric', None)
        if not metric:
            raise OptionError(f'agent.experts.{name}.metric: missing (a pyiqa metric name such as niqe)')
        lower = opt.pop('lower_better', None)
        if lower is not None and not isinstance(lower, bool):
            raise OptionError(f'agent.experts.{name}.lower_better: got {lower!r}; expected true or false')
        weight = expert_weight(name, opt.pop('weight', 1.0))
        own = ('type', 'metric', 'lower_better', 'weight')
        check_metric_options(metric, opt, f'agent.experts.{name}', own_keys=own)
        return ExpertInfo(str(name), lower if lower is not None else lower_is_better(metric), 'score', weight)

    @torch.no_grad()
    def score(self, outputs, gts, context):
        scores = []
        for batch_out, batch_gt in _same_shape_batches(outputs, gts):
            batch_out = batch_out.clamp(0, 1)  # pyiqa asserts inputs in [0, 1]
            if self.full_reference:
                value = self.metric(batch_out, batch_gt.clamp(0, 1))
            else:
                value = self.metric(batch_out)
            scores.extend(_finite_or_none(float(v)) for v in value.detach().reshape(-1).cpu())
        return scores


@register_expert('critique')
class CritiqueExpert(Expert):
    """A vision-language model on an OpenAI-compatible server describes each restored image."""
    kind = 'text'

    def __init__(self, name: str, opt: dict, device):
        super().__init__(name, lower_better=False)
        self.critic = Critic(opt, prefix=f'agent.experts.{name}')

    @classmethod
    def check_options(cls, name: str, opt: dict) -> ExpertInfo:
        check_critique_options(opt, prefix=f'agent.experts.{name}')
        return ExpertInfo(str(name), False, 'text')

    def score(self, outputs, gts, context):
        return self.critic.critique([png_bytes(img) for img in outputs])


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

    def __init__(self, name: str, opt: dict, device):
        super().__init__(name, lower_better=False)
        o = self._options(name, opt)
        self.timeout_s, self.poll_s, self.file = o['timeout_s'], o['poll_s'], o['file']

    @staticmethod
    def _options(name: str, opt: dict) -> dict:
        prefix = f'agent.experts.{name}'
        o = read_options(opt, HUMAN_DEFAULTS, prefix)
        o['timeout_s'] = number(o, 'timeout_s', 0, 10 ** 7, prefix=prefix)
        o['poll_s'] = number(o, 'poll_s', 0.01, 3600, prefix=prefix)
        if o['file'] is not None and not isinstance(o['file'], str):
            raise OptionError(f"{prefix}.file: got {o['file']!r}; expected a path or null")
        return o

    @classmethod
    def check_options(cls, name: str, opt: dict) -> ExpertInfo:
        cls._options(name, opt)
        return ExpertInfo(str(name), False, 'text')

    def score(self, outputs, gts, context):
        folder = stage_dir(context['agent_dir'], context['stage'])
        write_outputs(folder, list(context['names']), outputs)
        paths = [folder / FEEDBACK] + ([Path(self.file)] if self.file else [])
        feedback = wait_for_human_feedback(paths, folder / RATINGS, timeout_s=self.timeout_s, poll_s=self.poll_s,
                                           waiting_path=folder / WAITING,
                                           notice={'expert': self.name, 'stage': int(context['stage']),
                                                   'images': len(outputs)})
        return [feedback.for_image(i) if feedback else None for i in range(len(outputs))]


def _same_shape_batches(outputs, gts):
    """Consecutive images of one shape go through a metric together (gts None: no ground truth)."""
    shapes = [(out.shape, None if gt is None else gt.shape) for out, gt in zip(outputs, gts)]
    for start, end in equal_runs(shapes):
        yield torch.stack(outputs[start:end]), None if gts[start] is None else torch.stack(gts[start:end])


def _expert_class(name: str, opt) -> tuple[type, dict]:
    if opt is not None and not isinstance(opt, dict):
        raise OptionError(f'agent.experts.{name}: got {opt!r}; expected a mapping such as {{metric: niqe}}')
    opt = dict(opt or {})
    kind = opt.pop('type', 'iqa')
    if kind not in EXPERT_TYPES:
        raise OptionError(f"agent.experts.{name}.type: unknown expert type '{kind}'; "
                          f'choose one of {sorted(EXPERT_TYPES)}')
    return EXPERT_TYPES[kind], opt


def check_experts(experts_opt: dict) -> list[ExpertInfo]:
    """The experts of `agent.experts`, validated without building them."""
    if not experts_opt or not isinstance(experts_opt, dict):
        raise OptionError('agent.experts: give at least one expert, e.g. {NIQE: {metric: niqe}}')
    infos = []
    for name, opt in experts_opt.items():
        cls, opt = _expert_class(name, opt)
        infos.append(cls.check_options(str(name), opt))
    return infos


def build_experts(experts_opt: dict, device) -> list[Expert]:
    check_experts(experts_opt)
    experts = []
    for name, opt in experts_opt.items():
        cls, opt = _expert_class(name, opt)
        experts.append(cls(str(name), opt, device))
    return experts
