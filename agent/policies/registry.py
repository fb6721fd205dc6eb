"""The policies by name (`agent.policy.type`), and building one from the YAML's `agent.policy` mapping.

`build_policy` is BasicSR's `build_*`: copy the options, pop `type`, look the class up, construct.
A policy registers itself with `@register_policy('name')` in a `*_policy.py` file of this folder;
`agent/policies/__init__.py` imports every such file, so nothing else names it.
"""

from __future__ import annotations

from collections.abc import Callable

from lossagent_errors import OptionError

from ..record import ExpertInfo
from ..registry import Registry
from .base import LossPolicy

POLICY_REGISTRY = Registry('policy', 'agent.policy.type')


def register_policy(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        cls.name = name
        return POLICY_REGISTRY.register(cls, name=name)

    return wrap


def selected_options(opt: dict) -> tuple[str, dict]:
    """The policy `type` names and its options: the other keys, or -- when the mapping holds a mapping
    named after the type -- that mapping, beside which only other policies' option sets may stand, so
    that one option file can keep several and `--force_yml agent:policy:type=llm` switches between them."""
    opt = dict(opt or {})
    kind = opt.pop('type', 'fixed')
    if not isinstance(opt.get(kind), dict):
        return kind, opt
    others = [k for k, v in opt.items() if k != kind and not (k in POLICY_REGISTRY and isinstance(v, dict))]
    if others:
        raise OptionError(
            f'agent.policy.{others[0]}: beside agent.policy.{kind} (the options of type {kind}) '
            f"only other policies' option sets may stand; move it into agent.policy.{kind}"
        )
    return kind, dict(opt[kind])


def _policy_class(opt: dict) -> tuple[type, dict]:
    kind, options = selected_options(opt)
    return POLICY_REGISTRY.get(kind), options


def _checked(kind: str, call):
    try:
        return call()
    except OptionError:
        raise
    except (ValueError, TypeError) as err:  # a policy's own option checks
        raise OptionError(f'agent.policy ({kind}): {err}') from err


def build_policy(
    opt: dict,
    loss_names: list[str],
    initial_weights: list[float],
    experts: list[ExpertInfo],
    seed: int = 0,
    task: str = 'image super-resolution',
) -> LossPolicy:
    """`opt` is the YAML's `agent.policy` mapping; its `type` picks the class."""
    cls, rest = _policy_class(opt)
    return _checked(cls.name, lambda: cls(loss_names, initial_weights, experts, opt=rest, seed=seed, task=task))


def check_policy(
    opt: dict,
    loss_names: list[str],
    initial_weights: list[float],
    experts: list[ExpertInfo],
    seed: int = 0,
    task: str = 'image super-resolution',
) -> None:
    """What `build_policy` would reject, raised without connecting to or loading anything."""
    cls, rest = _policy_class(opt)
    _checked(cls.name, lambda: cls.check_options(loss_names, initial_weights, experts, rest, seed, task))


def policy_names() -> list[str]:
    return POLICY_REGISTRY.keys()


def find_policy(name: str) -> type | None:
    return POLICY_REGISTRY.get(name) if name in POLICY_REGISTRY else None
