"""One number per stage from all experts, for non-LLM policies: higher is better.

Experts disagree in scale (NIQE ~3-7, CLIPIQA 0-1, PSNR ~25 dB) and direction, so each
image's score is turned into its relative change against the reference stage (stage 0,
before the agent trained anything), signed so that an improvement is positive, averaged
over images, then combined over experts with `objective_weights` (default: equal).
Text experts and invalid (None/NaN) scores are skipped.
"""
from __future__ import annotations

from typing import Optional

from lossagent_errors import OptionError
from .record import ExpertInfo, StageRecord, is_number

EPS = 1e-6


def check_objective_weights(value, experts: list[ExpertInfo], key: str = 'agent.policy.objective_weights') -> dict:
    """{expert name: non-negative float}; missing experts get 1.0, text experts 0."""
    value = value or {}
    if not isinstance(value, dict):
        raise OptionError(f'{key}: got {value!r}; expected a mapping expert name -> weight')
    names = {e.name for e in experts}
    out = {e.name: (0.0 if e.kind == 'text' else 1.0) for e in experts}
    for name, w in value.items():
        if name not in names:
            raise OptionError(f'{key}.{name}: unknown expert; experts are {sorted(names)}')
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise OptionError(f'{key}.{name}: got {w!r}; expected a non-negative number')
        out[name] = float(w)
    if not any(w > 0 for n, w in out.items() if next(e for e in experts if e.name == n).kind != 'text'):
        raise OptionError(f'{key}: needs at least one score expert with a positive weight')
    return out


def expert_gain(record: StageRecord, reference: StageRecord, expert: ExpertInfo) -> Optional[float]:
    """Mean over images of the signed relative change of `expert`'s score; None if no image is valid."""
    now = record.scores.get(expert.name, [])
    ref = reference.scores.get(expert.name, [])
    sign = -1.0 if expert.lower_better else 1.0
    gains = [sign * (float(a) - float(b)) / max(abs(float(b)), EPS)
             for a, b in zip(now, ref) if is_number(a) and is_number(b)]
    return sum(gains) / len(gains) if gains else None


def stage_objective(record: StageRecord, reference: StageRecord, experts: list[ExpertInfo],
                    weights: dict[str, float]) -> tuple[Optional[float], dict[str, Optional[float]]]:
    """(combined objective or None, per-expert gains)."""
    gains = {e.name: expert_gain(record, reference, e) for e in experts if e.kind != 'text'}
    used = [(weights.get(n, 1.0), g) for n, g in gains.items() if g is not None and weights.get(n, 1.0) > 0]
    total = sum(w for w, _ in used)
    return (sum(w * g for w, g in used) / total if total > 0 else None), gains
