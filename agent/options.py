"""Reading `agent.policy` options: defaults, typo detection, one-line errors naming the key.

A typo in a YAML key would otherwise silently fall back to a default and run a whole
training with a setting nobody asked for, so unknown keys are errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from lossagent_errors import OptionError, check_keys


def read_options(opt: dict | None, defaults: dict, prefix: str = 'agent.policy') -> dict:
    """`defaults` updated with `opt`; any key not in `defaults` is an error."""
    opt = dict(opt or {})
    if 'api_key' in opt:  # checked first so the key is never echoed in an "unknown option" list
        raise OptionError(
            f'{prefix}.api_key: do not put keys in YAML; set an environment variable '
            f'and name it with {prefix}.api_key_env'
        )
    check_keys(opt, defaults, prefix)
    merged = dict(defaults)
    merged.update(opt)
    return merged


def choice(opts: dict, key: str, allowed: Iterable[Any], prefix: str = 'agent.policy') -> Any:
    allowed = list(allowed)
    value = opts[key]
    if isinstance(value, str):
        value = value.lower()
    if value not in allowed:
        raise OptionError(f'{prefix}.{key}: got {opts[key]!r}; allowed values are {allowed}')
    return value


def as_number(value) -> float | None:
    """The one reading of a number from YAML or a form: a finite int or float, or a numeric string
    (YAML reads `1e-4` without a dot as text), as a float; None for anything else (bools included)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def number(
    opts: dict,
    key: str,
    low: float = -math.inf,
    high: float = math.inf,
    integer: bool = False,
    allow_none: bool = False,
    prefix: str = 'agent.policy',
) -> Any:
    if opts[key] is None and allow_none:
        return None
    value = as_number(opts[key])
    ok = value is not None and (not integer or value.is_integer())
    if not ok or not low <= value <= high:
        kind = 'an integer' if integer else 'a number'
        raise OptionError(
            f'{prefix}.{key}: got {opts[key]!r}; expected {kind} in [{low}, {high}]'
            + (' or null' if allow_none else '')
        )
    return int(value) if integer else float(value)


def flag(opts: dict, key: str, prefix: str = 'agent.policy') -> bool:
    value = opts[key]
    if not isinstance(value, bool):
        raise OptionError(f'{prefix}.{key}: got {value!r}; expected true or false')
    return value


def pair(opts: dict, key: str, prefix: str = 'agent.policy') -> tuple[float, float]:
    value = opts[key]
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise OptionError(f'{prefix}.{key}: got {value!r}; expected [low, high]') from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise OptionError(f'{prefix}.{key}: got {value!r}; expected finite [low, high] with low < high')
    return low, high


def string_list(opts: dict, key: str, prefix: str = 'agent.policy') -> list[str]:
    """A string or a list of strings (YAML lets users write either)."""
    value = opts[key]
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v for v in value if v.strip()]
    raise OptionError(f'{prefix}.{key}: got {value!r}; expected a string or a list of strings')


@contextmanager
def nested(key: str, prefix: str = 'agent.policy') -> Iterator[None]:
    """Errors raised for an option set nested under `key` name their key there: a policy built from
    `agent.policy.optimizer` reports `agent.policy.optimizer.sigma`, not `agent.policy.sigma`."""
    try:
        yield
    except OptionError as err:
        message = str(err)
        if message.startswith((f'{prefix}.', f'{prefix}:', f'{prefix} ')):
            raise OptionError(f'{prefix}.{key}{message[len(prefix) :]}') from None
        raise
