"""From the per-seed test.py tables to the study's findings.

Held-out values are each method's Avg. over the held-out photos. An objective's value J is higher
when better: for one expert, that metric signed (-NIQE); for several, the weighted mean of the
signed metrics each divided by its spread (standard deviation) over all sweep runs, so PSNR
counts in PSNR+NIQE. Per seed, a method's gain is its J minus Fixed's (same seed, same data
order): mean, 95 % t-interval over seeds, wins. The oracle is the sweep setting with the best mean
J (in hindsight, on these very photos: the headroom is if anything optimistic), the headroom its
gain, and a policy's fraction of headroom recovered mean(gain) / mean(headroom), with a 95 %
bootstrap interval over seeds (seeds resampled with their pairs).
"""
from __future__ import annotations

import csv
import math
import random
import statistics
from collections import OrderedDict
from pathlib import Path

from .plan import FIXED, HELDOUT_METRIC, OBJECTIVES, ORACLE, START_LABEL

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
METRICS = OrderedDict(niqe=('NIQE', True, 2), psnr=('PSNR', False, 2), ssim=('SSIM', False, 4))


def heldout_values(csvs: list[Path]) -> dict:
    """{method: {metric: Avg.}} of every seed's table, merged (method names carry the seed)."""
    from lossagent_eval.tables import AVG, BenchmarkTable
    out = {}
    for path in csvs:
        table = BenchmarkTable.read_csv(str(path))
        for metric in table.metrics:
            for row in table.metric_rows(metric):
                out.setdefault(row, {})[metric] = table.value(metric, row, AVG)
    return out


def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan
    return m, T975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def bootstrap_ratio(num: list[float], den: list[float], draws: int = 20000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of mean(num)/mean(den), seeds resampled in pairs."""
    rng, n, ratios = random.Random(seed), len(num), []
    for _ in range(draws):
        idx = [rng.randrange(n) for _ in range(n)]
        d = statistics.fmean(den[i] for i in idx)
        if d > 0:
            ratios.append(statistics.fmean(num[i] for i in idx) / d)
    ratios.sort()
    if not ratios:
        return math.nan, math.nan
    return ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]


class Study:
    """Everything the report needs, computed once: J per run, oracle, gains, fractions."""

    def __init__(self, p: dict, runs: list, values: dict):
        self.p, self.runs, self.values = p, runs, values
        self.seeds = p['seeds']
        self.sweep = [r for r in runs if r.kind == 'sweep']
        self.spread = {e: statistics.pstdev([values[r.name][HELDOUT_METRIC[e][0]] for r in self.sweep]) or 1.0
                       for e in HELDOUT_METRIC}
        self.settings = list(OrderedDict.fromkeys(r.setting for r in self.sweep))

    def J(self, name: str, objective: str) -> float:
        experts = OBJECTIVES[objective].experts
        if len(experts) == 1:
            (expert, _), = experts.items()
            metric, lower = HELDOUT_METRIC[expert]
            return (-1 if lower else 1) * self.values[name][metric]
        total = sum(experts.values())
        return sum(w * (-1 if HELDOUT_METRIC[e][1] else 1) * self.values[name][HELDOUT_METRIC[e][0]] / self.spread[e]
                   for e, w in experts.items()) / total

    def run(self, seed: int, **match):
        return next(r for r in self.runs if r.seed == seed and all(getattr(r, k) == v for k, v in match.items()))

    def default(self, seed: int):
        return self.run(seed, kind='sweep', setting=tuple(1.0 for _ in self.settings[0]))

    def gains(self, objective: str, runs_by_seed: list) -> list[float]:
        return [self.J(r.name, objective) - self.J(self.default(r.seed).name, objective) for r in runs_by_seed]

    def oracle(self, objective: str):
        """(setting, its runs by seed, mean J) of the best sweep setting."""
        best = None
        for setting in self.settings:
            runs = [self.run(s, kind='sweep', setting=setting) for s in self.seeds]
            mean = statistics.fmean(self.J(r.name, objective) for r in runs)
            if best is None or mean > best[2]:
                best = (setting, runs, mean)
        return best

    def methods(self, objective: str) -> list[tuple[str, list]]:
        """(label, runs by seed) of the policies judged on `objective`."""
        out = []
        for run in self.runs:
            if run.kind == 'policy' and run.seed == self.seeds[0] and run.objective in (None, objective):
                out.append((run.label, [self.run(s, kind='policy', policy=run.policy, objective=run.objective)
                                        for s in self.seeds]))
        return out


def units(objective: str) -> str:
    experts = OBJECTIVES[objective].experts
    return f'{next(iter(experts))} points' if len(experts) == 1 else 'spread units'


def fmt_ci(mean: float, half: float, d: int = 2) -> str:
    return f'{mean:+.{d}f} ± {half:.{d}f}' if math.isfinite(half) else f'{mean:+.{d}f}'


def headroom_table(study: Study, objective: str) -> str:
    label = OBJECTIVES[objective].label
    lines = [f'### Fixed weightings on {label} (the sweep)', '',
             f'| setting | mean J | gain over {FIXED} ({units(objective)}), 95 % CI | seeds better |',
             '|---|---:|---:|---:|']
    names = list(study.default(study.seeds[0]).opt['train']['losses'])[1:]
    oracle_setting = study.oracle(objective)[0]
    for setting in study.settings:
        runs = [study.run(s, kind='sweep', setting=setting) for s in study.seeds]
        g = study.gains(objective, runs)
        mean_j = statistics.fmean(study.J(r.name, objective) for r in runs)
        text = ', '.join(f'{n} x{m:g}' for n, m in zip(names, setting))
        if setting == oracle_setting:
            text = f'**{text} (oracle)**'
        lines.append(f'| {text} | {mean_j:.3f} | {fmt_ci(*mean_ci(g))} | {sum(x > 0 for x in g)}/{len(g)} |')
    return '\n'.join(lines) + '\n'


def results_table(study: Study, objective: str) -> tuple[str, list[dict]]:
    label = OBJECTIVES[objective].label
    setting, oracle_runs, _ = study.oracle(objective)
    headroom = study.gains(objective, oracle_runs)
    rows = [(ORACLE, oracle_runs)] + study.methods(objective)
    lines = [f'### {label}: gain over {FIXED} on held-out photos ({units(objective)}, higher is better)', '',
             '| method | gain, 95 % CI | seeds better | fraction of headroom, 95 % CI |', '|---|---:|---:|---:|']
    found = []
    for name, runs in rows:
        g = study.gains(objective, runs)
        mean, half = mean_ci(g)
        if name == ORACLE:
            frac = '1 (by definition)'
        else:
            f = statistics.fmean(g) / statistics.fmean(headroom) if statistics.fmean(headroom) > 0 else math.nan
            lo, hi = bootstrap_ratio(g, headroom) if len(g) > 1 else (math.nan, math.nan)
            frac = f'{f:.2f} [{lo:.2f}, {hi:.2f}]' if math.isfinite(lo) else f'{f:.2f}'
            found.append({'objective': objective, 'method': name, 'gain': mean, 'ci': half, 'fraction': f,
                          'fraction_ci': [lo, hi], 'wins': sum(x > 0 for x in g), 'seeds': len(g)})
        lines.append(f'| {name} | {fmt_ci(mean, half)} | {sum(x > 0 for x in g)}/{len(g)} | {frac} |')
    return '\n'.join(lines) + '\n', found


def metrics_table(study: Study) -> str:
    """Every method's held-out NIQE / PSNR / SSIM, mean ± std over seeds (context for the gains)."""
    lines = ['| method | ' + ' | '.join(f'{m}{"↓" if low else "↑"}' for m, low, _ in METRICS.values()) + ' |',
             '|---|' + '---:|' * len(METRICS)]
    groups = [(START_LABEL, [START_LABEL])]
    for setting in study.settings:
        runs = [study.run(s, kind='sweep', setting=setting) for s in study.seeds]
        groups.append((runs[0].label, [r.name for r in runs]))
    seen = set()
    for run in study.runs:
        if run.kind == 'policy' and run.label not in seen:
            seen.add(run.label)
            groups.append((run.label, [r.name for r in study.runs if r.label == run.label]))
    for label, names in groups:
        cells = []
        for metric, (_, _, d) in METRICS.items():
            vals = [study.values[n][metric] for n in names]
            spread = f' ± {statistics.stdev(vals):.{d}f}' if len(vals) > 1 else ''
            cells.append(f'{statistics.fmean(vals):.{d}f}{spread}')
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def stage_signal(study: Study) -> tuple[str, dict]:
    """Stage-to-stage std of the validation scores with fixed weights: raw net_g vs EMA + snapshots."""
    from agent.runs.plot import load_records
    rows, out = [], {}
    for kind, label in (('diagnostic', 'net_g at the boundary (the first study)'),
                        ('sweep', 'EMA generator, snapshots averaged (this study)')):
        per_expert = {}
        for seed in study.p['diagnostic_seeds']:
            run = study.run(seed, kind='diagnostic') if kind == 'diagnostic' else study.default(seed)
            records = [r for r in load_records(run.root) if r.stage > 0]
            for expert in HELDOUT_METRIC:
                series = [r.mean_scores().get(expert) for r in records]
                diffs = [b - a for a, b in zip(series, series[1:]) if a is not None and b is not None]
                per_expert.setdefault(expert, []).extend(diffs)
        stds = {e: statistics.pstdev(d) if len(d) > 1 else math.nan for e, d in per_expert.items()}
        out[kind] = stds
        rows.append(f'| {label} | ' + ' | '.join(f'{stds[e]:.3f}' for e in HELDOUT_METRIC) + ' |')
    header = '| validation score of the Fixed run | ' + ' | '.join(f'{e} stage-to-stage std' for e in HELDOUT_METRIC) \
        + ' |\n|---|' + '---:|' * len(HELDOUT_METRIC)
    return header + '\n' + '\n'.join(rows) + '\n', out


def overhead(study: Study, took: dict) -> tuple[str, list]:
    lines, out = [], []
    for label, runs in {lab: rs for o in study.p['objectives'] for lab, rs in study.methods(o)}.items():
        if 'Lookahead' not in label:
            continue
        ratios = [took[r.name] / took[study.default(r.seed).name] - 1 for r in runs
                  if r.name in took and took.get(study.default(r.seed).name)]
        policy = runs[0].opt['agent']['policy']
        predicted = (policy['candidates'] - 1) * policy['probe_iters'] / runs[0].opt['agent']['stage_iters']
        if ratios:
            m, h = mean_ci(ratios)
            lines.append(f'| {label} | {predicted:.0%} | {m:+.0%} ± {h:.0%} |' if math.isfinite(h)
                         else f'| {label} | {predicted:.0%} | {m:+.0%} |')
            out.append({'method': label, 'predicted': predicted, 'measured': m})
    head = ('| run | predicted (K-1)·P / stage_iters | measured wall time over Fixed (same seed), 95 % CI |\n'
            '|---|---:|---:|')
    return head + '\n' + '\n'.join(lines) + '\n', out


def write_csv(path: Path, study: Study) -> None:
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        w.writerow(['run', 'label', 'seed', 'kind', 'objective'] + list(METRICS)
                   + [f'J_{o}' for o in study.p['objectives']])
        for run in study.runs:
            if run.name not in study.values:
                continue
            w.writerow([run.name, run.label, run.seed, run.kind, run.objective or ''] +
                       [repr(study.values[run.name][m]) for m in METRICS] +
                       [repr(study.J(run.name, o)) for o in study.p['objectives']])


def plot_seed(study: Study, out_dir: Path) -> list[Path]:
    """Seed 0: every policy's weights and validation scores side by side, and one figure per run."""
    from agent.runs.plot import load_records, plot_compare, plot_overview
    seed = study.seeds[0]
    picked = [study.default(seed)] + [r for r in study.runs if r.seed == seed and r.kind == 'policy']
    pngs = [plot_overview(load_records(r.root), out_dir / f'{r.name}.png', f'{r.label}, seed {seed}', log_y='on')
            for r in picked]
    return pngs + plot_compare([r.root for r in picked], out_dir, log_y='on')
