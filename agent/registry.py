"""Policies by name, the way BasicSR registers architectures: `@register_policy('fixed')`."""
from __future__ import annotations

from typing import Callable, Optional

from lossagent_errors import OptionError, closest
from .record import ExpertInfo
from .policy import LossPolicy

POLICIES: dict[str, type] = {}


def register_policy(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in POLICIES:
            raise KeyError(f"policy '{name}' is already registered by {POLICIES[name].__module__}")
        cls.name = name
        POLICIES[name] = cls
        return cls
    return wrap


def _policy_class(opt: dict) -> tuple[type, dict]:
    opt = dict(opt or {})
    kind = opt.pop('type', 'fixed')
    if kind not in POLICIES:
        raise OptionError(f"agent.policy.type: unknown policy '{kind}'{closest(kind, POLICIES)}; "
                          f'choose one of {sorted(POLICIES)}')
    return POLICIES[kind], opt


def _checked(kind: str, call):
    try:
        return call()
    except OptionError:
        raise
    except (ValueError, TypeError) as err:  # a policy's own option checks
        raise OptionError(f'agent.policy ({kind}): {err}') from err


def build_policy(opt: dict, loss_names: list[str], initial_weights: list[float],
                 experts: list[ExpertInfo], seed: int = 0,
                 task: str = 'image super-resolution') -> LossPolicy:
    """`opt` is the YAML's `agent.policy` mapping; its `type` picks the class."""
    cls, rest = _policy_class(opt)
    return _checked(cls.name, lambda: cls(loss_names, initial_weights, experts, opt=rest, seed=seed, task=task))


def check_policy(opt: dict, loss_names: list[str], initial_weights: list[float],
                 experts: list[ExpertInfo], seed: int = 0, task: str = 'image super-resolution') -> None:
    """What `build_policy` would reject, raised without connecting to or loading anything."""
    cls, rest = _policy_class(opt)
    _checked(cls.name, lambda: cls.check_options(loss_names, initial_weights, experts, rest, seed, task))


def policy_names() -> list[str]:
    return sorted(POLICIES)


def find_policy(name: str) -> Optional[type]:
    return POLICIES.get(name)
