"""One number per stage from all experts, for non-LLM policies: higher is better.

Experts disagree in scale (NIQE ~3-10, CLIPIQA 0-1, PSNR ~30 dB) and direction. Each expert's
gain is the mean over images of its signed change against a reference stage (positive =
better), put on a common scale, then combined with the experts' priorities
(`agent.experts.<name>.weight`, default 1; text experts never count):

    zscore    (default) the change divided by the expert's own spread: the standard deviation of
              its stage means over the run's history (and the candidates being compared), so one
              unit is "a typical stage-to-stage movement" of that expert, whatever its scale;
    relative  the change divided by the reference score (the first study's formula: the
              noisiest expert's swings of tens of percent then drown PSNR's few percent).

With fewer than three stage means the spread is not yet known: the spread of the reference
stage's per-image scores, divided by the square root of their count, stands in for it.
Invalid (None/NaN) scores are skipped.
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable, Optional

from .record import ExpertInfo, StageRecord, is_number

NORMALIZATIONS = ('zscore', 'relative')
EPS = 1e-9


def expert_spread(expert: str, records: Iterable[StageRecord], reference: StageRecord) -> float:
    """The expert's own scale: the std of its stage means (or the reference's per-image spread)."""
    means = [m for m in (r.mean_scores().get(expert) for r in records) if m is not None]
    if len(means) >= 3 and statistics.pstdev(means) > EPS:
        return statistics.pstdev(means)
    values = reference.numbers(expert)
    if len(values) >= 2 and statistics.pstdev(values) > EPS:
        return statistics.pstdev(values) / math.sqrt(len(values))
    return max(abs(statistics.fmean(values)) if values else 1.0, EPS) * 0.01  # 1 % of the level


def expert_gain(record: StageRecord, reference: StageRecord, expert: ExpertInfo,
                scale: Optional[float] = None) -> Optional[float]:
    """Mean over images of the signed change of `expert`'s score, divided by `scale` (relative to the
    reference score when None); None if no image is valid in both."""
    now = record.scores.get(expert.name, [])
    ref = reference.scores.get(expert.name, [])
    sign = -1.0 if expert.lower_better else 1.0
    pairs = [(float(a), float(b)) for a, b in zip(now, ref) if is_number(a) and is_number(b)]
    if not pairs:
        return None
    if scale is None:
        return sum(sign * (a - b) / max(abs(b), 1e-6) for a, b in pairs) / len(pairs)
    return sign * sum(a - b for a, b in pairs) / len(pairs) / scale


def stage_objective(record: StageRecord, reference: StageRecord, experts: list[ExpertInfo],
                    history: Iterable[StageRecord] = (), extra: Iterable = (),
                    normalize: str = 'zscore') -> tuple[Optional[float], dict[str, Optional[float]]]:
    """(combined objective or None, per-expert gains) of `record` against `reference`.

    `history` (and `extra`, e.g. the candidates a lookahead compares) give each expert's spread for
    `zscore`; anything with `mean_scores()` counts."""
    pool = list(history) + list(extra) + [record, reference]
    gains = {}
    for e in experts:
        if e.kind == 'text':
            continue
        scale = expert_spread(e.name, pool, reference) if normalize == 'zscore' else None
        gains[e.name] = expert_gain(record, reference, e, scale)
    used = [(e.weight, gains[e.name]) for e in experts
            if e.kind != 'text' and e.weight > 0 and gains.get(e.name) is not None]
    total = sum(w for w, _ in used)
    return (sum(w * g for w, g in used) / total if total > 0 else None), gains
