"""What every expert is, the registry of expert types, and an expert's checked options (`ExpertSpec`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agent.record import ExpertInfo
from agent.registry import Registry

EXPERT_REGISTRY = Registry('expert type', 'agent.experts.<name>.type')


def register_expert(name: str):
    """`@register_expert('kind')` on a class in an `*_expert.py` file of this folder: `type: kind` selects it."""
    return EXPERT_REGISTRY.register(name=name)


class Expert:
    """Scores a batch of restored images; one value per image (None when invalid)."""

    kind = 'score'
    full_reference = False  # compares with the ground truth (the agent's dataset must have one)

    def __init__(self, info: ExpertInfo):
        self.name = info.name
        self.lower_better = info.lower_better
        self.weight = info.weight

    @property
    def info(self) -> ExpertInfo:
        return ExpertInfo(self.name, self.lower_better, self.kind, self.weight)

    @classmethod
    def check_options(cls, name: str, opt: dict) -> ExpertInfo:
        """Validate `opt` (the entry without `type`) without building anything; what a policy will know
        about this expert."""
        raise NotImplementedError

    def score(self, outputs: list[torch.Tensor], gts: list[torch.Tensor], context: dict) -> list:
        raise NotImplementedError


@dataclass(frozen=True)
class ExpertSpec:
    """One entry of `agent.experts`, checked: the class its `type` names, its own options, and what a
    policy knows about it. Built once at start-up; the stage hook builds the expert from it."""

    info: ExpertInfo
    cls: type
    options: dict

    @property
    def name(self) -> str:
        return self.info.name

    def build(self, device) -> Expert:
        return self.cls(self.info, dict(self.options), device)
