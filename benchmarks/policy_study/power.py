"""The seed counts of benchmarks/protocol.md, from a power calculation on the last study's variances.

    python benchmarks/policy_study/power.py

The per-seed sd of a gain over Fixed comes from the 2026-12-02 study (benchmarks/study.md, 5 seeds):
adaptive-paired on NIQE +0.83 +- 0.83 (95 % t half-width, n = 5) -> sd = 0.83 * sqrt(5) / 2.776 = 0.67
NIQE. The smallest effect worth detecting is 0.5 NIQE (about 0.6 of the gain that study reported).
The test is the two-sided paired t-test; power from the noncentral t (stats.power).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from policy_study.stats import power, power_n, t_ppf  # noqa: E402

SD_PAIRED_NIQE = 0.83 * math.sqrt(5) / t_ppf(0.975, 4)  # 0.669
DELTA = 0.5
FAMILY = 8  # the tested comparisons under Holm (benchmarks/protocol.md, "Tests")
PRIMARY_SEEDS, SECONDARY_SEEDS = 20, 10


def main() -> int:
    sd = SD_PAIRED_NIQE
    print(f'per-seed sd of the paired NIQE gain: {sd:.3f} (from +0.83 +- 0.83, n = 5); effect delta = {DELTA}')
    z_n = math.ceil(((1.959964 + 0.841621) * sd / DELTA) ** 2)
    print(f'normal approximation, 80 % power, alpha 0.05: n = {z_n}')
    for alpha, what in (
        (0.05, 'alpha 0.05 (the primary alone)'),
        (0.05 / FAMILY, f'alpha 0.05/{FAMILY} (Holm, if the primary is the smallest p of {FAMILY})'),
    ):
        n80, n90 = power_n(DELTA, sd, 0.8, alpha), power_n(DELTA, sd, 0.9, alpha)
        print(
            f'paired t, {what}: 80 % power at n = {n80}, 90 % at n = {n90}; '
            f'power at n = {PRIMARY_SEEDS}: {power(PRIMARY_SEEDS, DELTA, sd, alpha):.3f}'
        )
    print(
        f'secondary arms, n = {SECONDARY_SEEDS}: power {power(SECONDARY_SEEDS, DELTA, sd):.3f} at delta {DELTA}, '
        f'{power(SECONDARY_SEEDS, 0.8, sd):.3f} at delta 0.8; smallest delta with 80 % power: '
        f'{next(d / 100 for d in range(10, 500) if power(SECONDARY_SEEDS, d / 100, sd) >= 0.8):.2f}'
    )
    print(
        f'detectable at n = {PRIMARY_SEEDS} with 80 % power: delta >= '
        f'{next(d / 100 for d in range(10, 500) if power(PRIMARY_SEEDS, d / 100, sd) >= 0.8):.2f} NIQE'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
