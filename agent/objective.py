"""One number per stage from all experts, for non-LLM policies: higher is better.

Experts disagree in scale (NIQE ~3-10, CLIPIQA 0-1, PSNR ~30 dB) and direction. Each expert's
gain is the mean over images of its signed change against a reference stage (positive =
better), put on a common scale, then combined with the experts' priorities
(`agent.experts.<name>.weight`, default 1; text experts never count):

    zscore    (default) the change divided by the expert's own scale (`expert_scale`), so one unit
              is "one standard error of the reference's mean" of that expert, whatever its units;
    relative  the change divided by the reference score (the first study's formula: the
              noisiest expert's swings of tens of percent then drown PSNR's few percent).

The scale of an expert, in this order:

    1. the standard error of the reference stage's mean over its images, measured robustly:
       `robust_scale` (1.4826 x the median absolute deviation: the standard deviation for normal
       data, which one wild image cannot inflate) of the reference's per-image scores divided by
       the square root of their count; when at least two images are valid and they differ;
    2. otherwise (one validation image) the robust scale of the expert's stage means over the pool
       (history + extra + record + reference, each record once), from MIN_STAGES means on;
    3. never below SCALE_FLOOR x max(1, |reference mean|), so equal scores everywhere do not
       divide by zero.

With several images (every study and demo task) the scale depends on the reference alone, not on
how many stages the history holds: every objective against stage 0 in a run (the adaptive
policies) has one scale, so differences of objectives computed at different stages are on one
scale too, and the candidates a lookahead compares against its boundary share one. The policy
study's held-out objective J uses the same definition (benchmarks/policy_study/report.py: the
start network's per-photo scores are the reference), so the agent and the study weigh PSNR
against NIQE alike.

(Until 2026-12 the scale was the standard deviation of stage means over a pool that held the
record and the reference twice: with two stages every gain was exactly +-2 whatever its size.)
Invalid (None/NaN) scores are skipped.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from .record import ExpertInfo, StageRecord, is_number

NORMALIZATIONS = ('zscore', 'relative')
MAD_TO_SD = 1.4826  # 1 / Phi^-1(3/4): MAD x this estimates the sd of normal data
MIN_STAGES = 3  # stage means needed before their spread is a scale (one image)
SCALE_FLOOR = 1e-3  # the smallest scale, relative to max(1, |reference mean|)


def robust_scale(values: Iterable[float]) -> float:
    """1.4826 x the median absolute deviation of `values` (0.0 for fewer than two)."""
    xs = [float(v) for v in values if is_number(v)]
    if len(xs) < 2:
        return 0.0
    centre = statistics.median(xs)
    return MAD_TO_SD * statistics.median(abs(x - centre) for x in xs)


def unique_records(records: Iterable) -> list:
    """`records` with each one once; a lookahead candidate seen as a record (ProbeResult.as_record
    shares its `scores`) is the same record."""
    seen, out = set(), []
    for r in records:
        if id(r.scores) not in seen:
            seen.add(id(r.scores))
            out.append(r)
    return out


def expert_scale(expert: str, reference: StageRecord, pool: Iterable = ()) -> float:
    """`expert`'s scale against `reference` (the module's docstring says which, in which order)."""
    values = [float(v) for v in reference.scores.get(expert, []) if is_number(v)]
    floor = SCALE_FLOOR * max(1.0, abs(statistics.fmean(values)) if values else 0.0)
    if robust_scale(values) > 0:
        return max(robust_scale(values) / math.sqrt(len(values)), floor)
    means = [m for m in (r.mean_scores().get(expert) for r in unique_records([*pool, reference])) if is_number(m)]
    return max(robust_scale(means) if len(means) >= MIN_STAGES else 0.0, floor)


def expert_gain(
    record: StageRecord, reference: StageRecord, expert: ExpertInfo, scale: float | None = None
) -> float | None:
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


def stage_objective(
    record: StageRecord,
    reference: StageRecord,
    experts: list[ExpertInfo],
    history: Iterable = (),
    extra: Iterable = (),
    normalize: str = 'zscore',
) -> tuple[float | None, dict[str, float | None]]:
    """(combined objective or None, per-expert gains) of `record` against `reference`.

    `history` and `extra` (e.g. the candidates a lookahead compares) matter only with a single
    validation image: their stage means then give each expert's scale."""
    pool = [*history, *extra, record]
    gains = {}
    for e in experts:
        if e.kind == 'text':
            continue
        scale = expert_scale(e.name, reference, pool) if normalize == 'zscore' else None
        gains[e.name] = expert_gain(record, reference, e, scale)
    used = [
        (e.weight, gains[e.name])
        for e in experts
        if e.kind != 'text' and e.weight > 0 and gains.get(e.name) is not None
    ]
    total = sum(w for w, _ in used)
    return (sum(w * g for w, g in used) / total if total > 0 else None), gains
