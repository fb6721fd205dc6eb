"""The one check of a set of loss weights: the parser, the policies, the stage hook and the loss
repository all accept and reject weights by the same rule."""

from __future__ import annotations

import math

UNBOUNDED = (0.0, math.inf)


def check_weights(weights, names: list[str], bounds: tuple[float, float] = UNBOUNDED) -> str | None:
    """Why `weights` cannot train the repository `names`, or None when they can: one finite number
    per loss (no more, no fewer), each non-negative and within `bounds`, and not all zero."""
    if not isinstance(weights, dict):
        return f'expected a mapping {":".join(names)} -> weight, got {type(weights).__name__}'
    unknown = [k for k in weights if k not in names]
    if unknown:
        return f'unknown loss {str(unknown[0])[:40]!r}; expected {":".join(names)}'
    missing = [n for n in names if n not in weights]
    if missing:
        return f'expected {len(names)} weights ({":".join(names)}), missing {", ".join(missing)}'
    for name in names:
        problem = check_weight(name, weights[name], bounds)
        if problem:
            return problem
    if all(weights[n] == 0 for n in names):
        return 'all weights are zero'
    return None


def check_weight(name: str, value, bounds: tuple[float, float] = UNBOUNDED) -> str | None:
    """Why one loss' weight is unusable on its own (a zero is fine here; a repository of zeros is not)."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f'weight of {name} is not a number ({value!r})'
    if not math.isfinite(value):
        return f'weight of {name} is not finite ({value})'
    if value < 0:
        return f'weight of {name} is negative ({value:g}); weights must be non-negative'
    if not low <= value <= high:
        return f'weight of {name} is {value:g}, outside the allowed range [{low:g}, {high:g}]'
    return None


def ratio(weights: dict, names: list[str], spec: str = '.4g') -> str:
    """'1:0.5:0.01' in repository order."""
    return ':'.join(f'{float(weights[n]):{spec}}' for n in names)
