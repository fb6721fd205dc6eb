"""Policies by name, the way BasicSR registers architectures: `@register_policy('fixed')`."""
from __future__ import annotations

from typing import Callable, Optional

from .base import ExpertInfo, LossPolicy, OptionError

POLICIES: dict[str, type] = {}


def register_policy(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in POLICIES:
            raise KeyError(f"policy '{name}' is already registered by {POLICIES[name].__module__}")
        cls.name = name
        POLICIES[name] = cls
        return cls
    return wrap


def build_policy(opt: dict, loss_names: list[str], initial_weights: list[float],
                 experts: list[ExpertInfo], seed: int = 0,
                 task: str = 'image super-resolution') -> LossPolicy:
    """`opt` is the YAML's `agent.policy` mapping; its `type` picks the class."""
    opt = dict(opt or {})
    kind = opt.pop('type', 'fixed')
    if kind not in POLICIES:
        raise OptionError(f"agent.policy.type: unknown policy '{kind}'; choose one of {sorted(POLICIES)}")
    try:
        return POLICIES[kind](loss_names, initial_weights, experts, opt=opt, seed=seed, task=task)
    except OptionError:
        raise
    except (ValueError, TypeError) as err:  # a policy's own option checks
        raise OptionError(f'agent.policy ({kind}): {err}') from err


def policy_names() -> list[str]:
    return sorted(POLICIES)


def find_policy(name: str) -> Optional[type]:
    return POLICIES.get(name)
