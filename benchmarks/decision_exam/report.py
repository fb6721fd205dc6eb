"""The exam's tables: numbers in, markdown out (statistics from benchmarks/policy_study/stats.py)."""

from __future__ import annotations

import math
import statistics

from policy_study.stats import fieller, paired_t, wilcoxon


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pct(x: float) -> str:
    return 'n/a' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{100 * x:.0f} %'


def num(x: float, d: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return 'n/a' if x is None or math.isnan(x) else ('+inf' if x > 0 else '-inf')
    return f'{x:+.{d}f}'


def latency(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return 'n/a'
    return f'{statistics.median(values):.2f} s (max {max(values):.1f})'


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows])


# ---- reading test ---------------------------------------------------------------------------------
def reading_table(results: dict) -> str:
    """results: {policy: {'score': reading.score(...), 'compliance': fraction, 'latency': [s]}}."""
    rows = []
    for label, r in results.items():
        s = r['score']
        low, high = wilson(s['n_right'], s['n'])
        rows.append(
            [
                label,
                s['n'],
                f'{pct(s["right"])} [{pct(low)}, {pct(high)}]',
                pct(s['unchanged']),
                f'{pct(s["right_of_moved"])} of {s["n_moved"]}',
                pct(r['compliance']),
                pct(sum(r['copies']) / len(r['copies'])) if r['copies'] else '',
                latency(r['latency']),
            ]
        )
    return table(
        [
            'policy',
            'decisions',
            'right way (95 % Wilson)',
            'changed nothing',
            'right, of those that moved',
            'compliance',
            'copies the example',
            'latency (median)',
        ],
        rows,
    )


def reading_breakdown(breakdowns: dict) -> str:
    """breakdowns: {policy: {factor: {level: score}}}: the fraction right per level."""
    columns = []
    for per_factor in breakdowns.values():
        for factor, levels in per_factor.items():
            for level in levels:
                if (factor, level) not in columns:
                    columns.append((factor, level))
    rows = [
        [label] + [pct(per_factor.get(f, {}).get(lv, {}).get('right', math.nan)) for f, lv in columns]
        for label, per_factor in breakdowns.items()
    ]
    return table(['policy'] + [f'{f}={lv}' for f, lv in columns], rows)


# ---- counterfactual decisions ---------------------------------------------------------------------
def gain_cell(gains: list[float]) -> str:
    finite = [g for g in gains if math.isfinite(g)]
    if len(finite) < 2:
        return num(finite[0]) if finite else 'n/a'
    t = paired_t(finite)
    return f'{num(t.mean)} [{num(t.ci[0])}, {num(t.ci[1])}]'


def win_rate(gains: list[float]) -> float:
    finite = [g for g in gains if math.isfinite(g)]
    return sum(g > 0 for g in finite) / len(finite) if finite else math.nan


def oracle_fraction(gains: list[float], oracle: list[float]) -> str:
    pairs = [(g, o) for g, o in zip(gains, oracle) if math.isfinite(g) and math.isfinite(o)]
    if len(pairs) < 2 or not any(o for _, o in pairs):
        return 'n/a'
    top, bottom = [g for g, _ in pairs], [o for _, o in pairs]
    if statistics.pvariance(bottom) == 0:  # Fieller's interval needs a varying denominator
        return f'{num(statistics.fmean(top) / bottom[0], 2)} (no interval)'
    ratio, low, high = fieller(top, bottom)
    return f'{num(ratio, 2)} [{num(low, 2)}, {num(high, 2)}]'


def counterfactual_table(rows: dict, oracle: dict) -> str:
    """rows: {policy: {'val': [gain per point], 'heldout': [...], 'changed': [bool], 'compliant': [bool],
    'latency': [s]}}; oracle: {'val': [...], 'heldout': [...]}, the same points in the same order."""
    out = []
    for label, r in rows.items():
        p = wilcoxon([g for g in r['val'] if math.isfinite(g)])[1] if r['val'] else math.nan
        out.append(
            [
                label,
                len(r['val']),
                pct(sum(r['changed']) / len(r['changed'])) if r['changed'] else 'n/a',
                pct(sum(r['as_run']) / len(r['as_run'])) if r['as_run'] else 'n/a',
                gain_cell(r['val']),
                pct(win_rate(r['val'])),
                f'{p:.3f}' if math.isfinite(p) else 'n/a',
                oracle_fraction(r['val'], oracle['val']),
                gain_cell(r['heldout']),
                pct(win_rate(r['heldout'])),
                pct(sum(r['compliant']) / len(r['compliant'])) if r['compliant'] else 'n/a',
                pct(sum(r['copies']) / len(r['copies'])) if r['copies'] else '',
                latency(r['latency']),
            ]
        )
    out.append(
        [
            '**one-step oracle** (best of the grid, chosen on the agent images)',
            len(oracle['val']),
            '',
            '',
            gain_cell(oracle['val']),
            pct(win_rate(oracle['val'])),
            '',
            '1',
            gain_cell(oracle['heldout']),
            pct(win_rate(oracle['heldout'])),
            '',
            '',
            '',
        ]
    )
    return table(
        [
            'policy',
            'points',
            'changed the weights',
            "= the run's decision",
            'gain, agent images (95 % CI)',
            'win rate',
            'Wilcoxon p',
            'fraction of oracle (Fieller)',
            'gain, held-out photos (95 % CI)',
            'win rate',
            'compliance',
            'copies the example',
            'latency (median)',
        ],
        out,
    )


def grid_table(grid: dict) -> str:
    """grid: {label: {'val': [gains], 'heldout': [gains], 'best': count}}."""
    rows = [
        [label, gain_cell(g['val']), pct(win_rate(g['val'])), gain_cell(g['heldout']), g['best']]
        for label, g in grid.items()
    ]
    return table(['grid weighting', 'gain, agent images', 'win rate', 'gain, held-out', 'the oracle at # points'], rows)
