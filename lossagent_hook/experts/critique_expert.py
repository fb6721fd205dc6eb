"""`type: critique`: a vision-language model on an OpenAI-compatible server describes each restored image."""

from __future__ import annotations

from agent.llm.critique import Critic, check_critique_options
from agent.record import ExpertInfo

from ..stage_images import png_bytes
from .base import Expert, register_expert


@register_expert('critique')
class CritiqueExpert(Expert):
    """Words per image where a score would be (kind text)."""

    kind = 'text'

    def __init__(self, info: ExpertInfo, opt: dict, device):
        super().__init__(info)
        self.critic = Critic(opt, prefix=f'agent.experts.{info.name}')

    @classmethod
    def check_options(cls, name: str, opt: dict) -> ExpertInfo:
        check_critique_options(opt, prefix=f'agent.experts.{name}')
        return ExpertInfo(str(name), False, 'text')

    def score(self, outputs, gts, context):
        return self.critic.critique([png_bytes(img) for img in outputs])
