"""From the per-seed test.py tables to the pre-registered findings (benchmarks/protocol.md).

(Over ~400 lines on purpose: each pre-registered table is one function, in the protocol's order.)

A run's held-out value of a metric on a photo set is the mean over that set's photos of each photo's
mean over its crops. An objective's value J is higher when better: for NIQE, -NIQE; for PSNR+NIQE
the mean over the two of the signed metric divided by its scale s, the robust standard error of the
start network's per-photo scores on that set (`agent.objective.expert_scale`: the agent's own scale,
so one diverging run cannot set it). Per seed, a method's gain is its J minus its baseline's (same
seed: same start, data order and random numbers).

Choices (the oracle: the grid setting with the best mean NIQE J; the best schedule) are made on the
selection photos; the headline numbers are on the final-test photos when the profile evaluates them
(the full study), else on the selection photos, and the tables say which. Every comparison: the
two-sided paired t-test and the exact Wilcoxon signed-rank test, each family Holm-adjusted over every
comparison reported; fractions of the oracle's headroom with Fieller's interval (stats.py).
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import OrderedDict
from pathlib import Path

from .plan import (
    ARMS,
    FIXED,
    HELDOUT_METRIC,
    OBJECTIVES,
    ORACLE,
    PBT_LABEL,
    POLICY_OBJECTIVE,
    SCHEDULES,
    START_LABEL,
    photos,
    probes,
)
from .stats import fieller, holm, paired_t, wilcoxon

METRICS = OrderedDict(niqe=('NIQE', True, 2), psnr=('PSNR', False, 2), ssim=('SSIM', False, 4))


def heldout_values(csvs: list[Path]) -> dict:
    """{method: {metric: {photo: mean over its crops}}} of every seed's table (method names carry the seed)."""
    from lossagent_eval.tables import AVG, BenchmarkTable

    out = {}
    for path in csvs:
        table = BenchmarkTable.read_csv(str(path))
        for metric in table.metrics:
            for row in table.metric_rows(metric):
                out.setdefault(row, {})[metric] = {d: table.value(metric, row, d) for d in table.datasets if d != AVG}
    return out


def fmt_ci(t, d: int = 2) -> str:
    if not math.isfinite(t.ci[0]):
        return f'{t.mean:+.{d}f}'
    return f'{t.mean:+.{d}f} [{t.ci[0]:+.{d}f}, {t.ci[1]:+.{d}f}]'


def fmt_p(p: float) -> str:
    return 'n/a' if not math.isfinite(p) else f'{p:.2g}' if p >= 1e-4 else '<1e-4'


class Study:
    """Everything the report needs, computed once: values per photo set, J, choices, gains."""

    def __init__(self, p: dict, runs: list, values: dict, took: dict | None = None):
        self.p, self.values, self.took = p, values, took or {}
        self.runs = [r for r in runs if r.name in values]  # missing runs (failed twice) drop out
        self.missing = [r.name for r in runs if r.name not in values]
        self.headline = 'test' if 'test' in p['photo_sets'] else 'selection'
        from agent.objective import expert_scale
        from agent.record import StageRecord

        self.scale = {}
        for photo_set in p['photo_sets']:
            for expert, (metric, _) in HELDOUT_METRIC.items():
                start = [values[START_LABEL][metric][ph] for ph in photos(p, photo_set)]
                self.scale[photo_set, expert] = expert_scale(expert, StageRecord(0, 0, {}, {expert: start}))
        self.settings = list(OrderedDict.fromkeys(r.setting for r in self.runs if r.kind == 'sweep'))

    # ---- values --------------------------------------------------------------------------------
    def value(self, name: str, metric: str, photo_set: str) -> float:
        return statistics.fmean(self.values[name][metric][ph] for ph in photos(self.p, photo_set))

    def J(self, name: str, objective: str, photo_set: str) -> float:
        experts = OBJECTIVES[objective].experts
        signed = {
            e: (-1 if HELDOUT_METRIC[e][1] else 1) * self.value(name, HELDOUT_METRIC[e][0], photo_set) for e in experts
        }
        if len(experts) == 1:
            return next(iter(signed.values()))
        return sum(w * signed[e] / self.scale[photo_set, e] for e, w in experts.items()) / sum(experts.values())

    # ---- runs ----------------------------------------------------------------------------------
    def find(self, seed: int, **match):
        return next(
            (r for r in self.runs if r.seed == seed and all(getattr(r, k) == v for k, v in match.items())), None
        )

    def default(self, seed: int):
        return self.find(seed, kind='sweep', setting=tuple(1.0 for _ in self.settings[0])) if self.settings else None

    def group(self, **match) -> dict:
        """{seed: run} of the runs matching (one per seed)."""
        return {r.seed: r for r in self.runs if all(getattr(r, k) == v for k, v in match.items())}

    def gains(
        self, runs: dict, baseline: dict, objective: str = POLICY_OBJECTIVE, photo_set: str | None = None
    ) -> list[float]:
        """Per seed present in both: J(run) - J(baseline)."""
        photo_set = photo_set or self.headline
        return [
            self.J(runs[s].name, objective, photo_set) - self.J(baseline[s].name, objective, photo_set)
            for s in sorted(set(runs) & set(baseline))
        ]

    def fixed(self) -> dict:
        return self.group(kind='sweep', setting=tuple(1.0 for _ in self.settings[0]))

    def best(self, groups: dict, objective: str = POLICY_OBJECTIVE):
        """The key of `groups` ({key: {seed: run}}) with the best mean J on the selection photos."""
        return max(
            groups, key=lambda k: statistics.fmean(self.J(r.name, objective, 'selection') for r in groups[k].values())
        )

    def grid(self) -> dict:
        return OrderedDict((s, self.group(kind='sweep', setting=s)) for s in self.settings)

    def oracle(self, objective: str = POLICY_OBJECTIVE):
        """(setting, {seed: run}) of the grid setting chosen on the selection photos (seeds with the whole grid)."""
        grid = self.grid()
        full = set.intersection(*(set(g) for g in grid.values())) if grid else set()
        grid = OrderedDict((s, {seed: r for seed, r in g.items() if seed in full}) for s, g in grid.items())
        setting = self.best(grid, objective)
        return setting, grid[setting]

    def schedules(self) -> dict:
        return OrderedDict(
            (k, self.group(kind='schedule', policy=k)) for k in SCHEDULES if self.group(kind='schedule', policy=k)
        )

    def arm_runs(self) -> OrderedDict:
        """{arm key: (label, {seed: run})} of the one-run policy arms that ran."""
        out = OrderedDict()
        for key in ARMS:
            runs = self.group(kind='policy', policy=key)
            if runs:
                out[key] = (next(iter(runs.values())).label, runs)
        return out


# ---- the pre-registered comparisons ------------------------------------------------------------
def comparisons(study: Study) -> list[dict]:
    """protocol.md's comparisons that have runs, each with its gains on the headline photos and both tests,
    Holm-adjusted over all of them (t and Wilcoxon as separate families)."""
    fixed, arms, out = study.fixed(), study.arm_runs(), []

    def add(key: str, label: str, runs: dict, baseline: dict, baseline_label: str):
        g = study.gains(runs, baseline)
        if g:  # one seed (the smoke test): the row, without p-values
            out.append(
                {
                    'key': key,
                    'label': label,
                    'baseline': baseline_label,
                    'gains': g,
                    't': paired_t(g),
                    'wilcoxon': wilcoxon(g),
                }
            )

    for key, vs in (
        ('paired', None),
        ('paired_random', None),
        ('paired', 'paired_random'),
        ('lookahead', None),
        ('llm', None),
        ('hybrid', None),
    ):
        if key not in arms or (vs is not None and vs not in arms):
            continue
        label, runs = arms[key]
        base_label, base = (FIXED, fixed) if vs is None else arms[vs]
        add(key if vs is None else f'{key}_vs_{vs}', label, runs, base, base_label)
    if len(study.settings) > 1:
        setting, oracle = study.oracle()
        add('oracle', f'{ORACLE} ({next(iter(oracle.values())).label})', oracle, fixed, FIXED)
        schedules = study.schedules()
        if schedules:
            best = study.best(schedules)
            add(
                'schedule',
                f'Best schedule ({next(iter(schedules[best].values())).label})',
                schedules[best],
                oracle,
                f'best constant ({next(iter(oracle.values())).label})',
            )
    tested = [c for c in out if c['t'].n >= 2]
    t_adj = holm({c['key']: c['t'].p for c in tested})
    w_adj = holm({c['key']: c['wilcoxon'][1] for c in tested})
    for c in out:
        c['p_holm'], c['wilcoxon_p_holm'] = t_adj.get(c['key'], math.nan), w_adj.get(c['key'], math.nan)
    return out


def comparisons_table(study: Study, found: list[dict]) -> str:
    where = (
        'final-test photos'
        if study.headline == 'test'
        else 'selection photos (not the headline: this profile opens no final-test photo)'
    )
    lines = [
        f'### NIQE gain over the baseline on the {where}',
        '',
        'NIQE points, higher is better.',
        '',
        f'Holm over the {sum(c["t"].n >= 2 for c in found)} comparisons with two or more seeds (paired t; the '
        'Wilcoxon p-values are their own family).',
        '',
        '| comparison | baseline | n | gain, 95 % t-interval | p (Holm) | p raw | Wilcoxon p (Holm) | seeds better |',
        '|---|---|---:|---:|---:|---:|---:|---:|',
    ]
    for c in found:
        t = c['t']
        lines.append(
            f'| {c["label"]} | {c["baseline"]} | {t.n} | {fmt_ci(t)} | {fmt_p(c["p_holm"])} | {fmt_p(t.p)} | '
            f'{fmt_p(c["wilcoxon_p_holm"])} | {sum(g > 0 for g in c["gains"])}/{t.n} |'
        )
    return '\n'.join(lines) + '\n'


def headroom_fractions(study: Study) -> tuple[str, list[dict]]:
    """Each one-run arm's gain over Fixed as a fraction of the oracle's headroom (Fieller, 95 %)."""
    if len(study.settings) < 2:
        return '', []
    fixed = study.fixed()
    _, oracle = study.oracle()
    lines = ["| method | fraction of the oracle's headroom, 95 % Fieller interval | seeds |", '|---|---:|---:|']
    out = []
    for key, (label, runs) in study.arm_runs().items():
        seeds = sorted(set(runs) & set(oracle) & set(fixed))
        if len(seeds) < 2:
            continue
        num = study.gains({s: runs[s] for s in seeds}, fixed)
        den = study.gains({s: oracle[s] for s in seeds}, fixed)
        ratio, lo, hi = fieller(num, den)
        interval = f'[{lo:.2f}, {hi:.2f}]' if math.isfinite(lo) else 'unbounded (headroom not distinguishable from 0)'
        lines.append(f'| {label} | {ratio:.2f} {interval} | {len(seeds)} |')
        out.append({'arm': key, 'fraction': ratio, 'fieller': [lo, hi], 'seeds': len(seeds)})
    return ('\n'.join(lines) + '\n' if out else ''), out


def psnr_niqe_gains(study: Study) -> str:
    """Descriptive (no test): each arm's J(PSNR+NIQE) gain over Fixed on the headline photos."""
    fixed, lines = study.fixed(), []
    groups = [(label, runs) for label, runs in study.arm_runs().values()]
    if len(study.settings) > 1:
        _, oracle = study.oracle()
        groups.append((f'{ORACLE} (chosen on NIQE)', oracle))
    groups += [(next(iter(r.values())).label, r) for r in study.schedules().values()]
    if study.group(kind='pbt'):
        groups.append((PBT_LABEL, study.group(kind='pbt')))
    for label, runs in groups:
        g = study.gains(runs, fixed, objective='psnr_niqe')
        if g:
            lines.append(f'| {label} | {len(g)} | {fmt_ci(paired_t(g))} |')
    head = '| method | n | J(PSNR+NIQE) gain over Fixed, 95 % t-interval (scale units) |\n|---|---:|---:|\n'
    return head + '\n'.join(lines) + '\n' if lines else ''


# ---- compute ----------------------------------------------------------------------------------
def measured_compute(run) -> float:
    """Training iterations over the run's own total_iter: 1 + the lookahead's discarded candidates'
    iterations (its decision log), or PBT's population total (pbt.json)."""
    import json

    total = run.opt['train']['total_iter']
    if run.kind == 'pbt':
        return json.loads((run.root / 'pbt.json').read_text())['training_iters'] / total
    if run.kind == 'policy' and probes(run.opt['agent']['policy']):
        from agent.decision_log import current_records

        records = current_records(run.root / 'agent' / 'decisions.jsonl')
        return 1 + max((r.info.get('discarded_iters_total', 0) for r in records), default=0) / total
    return 1.0


def cost_axis(study: Study) -> tuple[str, list[dict]]:
    """Held-out NIQE gain over Fixed against total training iterations (Fixed = 1x)."""
    fixed, rows = study.fixed(), []

    def row(label: str, runs: dict, compute: float, note: str = ''):
        g = study.gains(runs, fixed)
        if g:
            cpu = [study.took.get(r.name, {}).get('cpu_s') for r in runs.values()]
            cpu = [c for c in cpu if c]
            rows.append(
                {
                    'method': label,
                    'compute': compute,
                    't': paired_t(g) if len(g) > 1 else None,
                    'gain': statistics.fmean(g),
                    'n': len(g),
                    'note': note,
                    'cpu_s': statistics.fmean(cpu) if cpu else None,
                }
            )

    row(FIXED, fixed, 1.0)
    for key, (label, runs) in study.arm_runs().items():
        row(
            label,
            runs,
            statistics.fmean(measured_compute(r) for r in runs.values()),
            'measured: 1 + discarded candidates' if probes(ARMS[key].policy) else '',
        )
    schedules = study.schedules()
    if schedules:
        best = study.best(schedules)
        row(
            f'Best schedule ({next(iter(schedules[best].values())).label})',
            schedules[best],
            1.0,
            f'chosen on selection photos among {len(schedules)}',
        )
    if len(study.settings) > 1:
        _, oracle = study.oracle()
        row(
            f'{ORACLE} (grid of {len(study.settings)})',
            oracle,
            float(len(study.settings)),
            'all settings trained; chosen on selection photos',
        )
    pbt = study.group(kind='pbt')
    if pbt:
        row(PBT_LABEL, pbt, statistics.fmean(measured_compute(r) for r in pbt.values()), 'population total')
    lines = [
        '| method | training iterations (x Fixed) | NIQE gain over Fixed, 95 % t-interval | seeds | '
        'CPU s per run | note |',
        '|---|---:|---:|---:|---:|---|',
    ]
    for r in rows:
        gain = fmt_ci(r['t']) if r['t'] is not None else f'{r["gain"]:+.2f}'
        cpu = f'{r["cpu_s"]:.0f}' if r['cpu_s'] else ''
        lines.append(f'| {r["method"]} | {r["compute"]:.2f}x | {gain} | {r["n"]} | {cpu} | {r["note"]} |')
    return '\n'.join(lines) + '\n', rows


def plot_cost(rows: list[dict], path: Path, where: str) -> Path:
    """Quality (NIQE gain over Fixed, 95 % interval) against compute (x Fixed's iterations)."""
    from agent.runs.plot import new_figure, save

    fig, (ax,) = new_figure(1, 1, 9.0, 4.2)
    # methods at the same compute (most sit at 1x) are spread a little sideways and named in a legend,
    # so neither their intervals nor their names cover each other
    same = [sum(1 for q in rows if q['compute'] == r['compute']) for r in rows]
    place = [sum(1 for q in rows[:i] if q['compute'] == r['compute']) for i, r in enumerate(rows)]
    for r, k, i in zip(rows, same, place):
        lo, hi = r['t'].ci if r['t'] is not None and math.isfinite(r['t'].ci[0]) else (r['gain'], r['gain'])
        x = r['compute'] * math.exp(0.04 * (i - (k - 1) / 2))
        ax.errorbar([x], [r['gain']], yerr=[[r['gain'] - lo], [hi - r['gain']]], fmt='o', capsize=3, label=r['method'])
    ax.legend(loc='center left', bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)
    ax.axhline(0, color='grey', lw=0.8)
    ax.set_xscale('log')
    ticks = sorted({round(r['compute'], 2) for r in rows})
    ax.set_xticks(ticks, [f'{t:g}x' for t in ticks])
    ax.set_xticks([], minor=True)
    ax.set_xlabel('training iterations (x one Fixed run)')
    ax.set_ylabel(f'NIQE gain over Fixed ({where} photos)')
    ax.set_title('Quality against compute')
    return save(fig, path)


# ---- descriptive tables -------------------------------------------------------------------------
def metrics_table(study: Study, photo_set: str) -> str:
    """Every method's NIQE / PSNR / SSIM and J(PSNR+NIQE) on one photo set, mean ± sd over seeds."""
    lines = [
        '| method | seeds | '
        + ' | '.join(f'{m}{"↓" if low else "↑"}' for m, low, _ in METRICS.values())
        + ' | J(PSNR+NIQE)↑ |',
        '|---|---:|' + '---:|' * (len(METRICS) + 1),
    ]
    groups = OrderedDict()
    for run in study.runs:
        groups.setdefault(run.label, []).append(run.name)
    for label, names in [(START_LABEL, [START_LABEL])] + list(groups.items()):
        cells = []
        for metric, (_, _, d) in METRICS.items():
            vals = [study.value(n, metric, photo_set) for n in names]
            spread = f' ± {statistics.stdev(vals):.{d}f}' if len(vals) > 1 else ''
            cells.append(f'{statistics.fmean(vals):.{d}f}{spread}')
        js = [study.J(n, 'psnr_niqe', photo_set) for n in names]
        cells.append(f'{statistics.fmean(js):.2f}' + (f' ± {statistics.stdev(js):.2f}' if len(js) > 1 else ''))
        lines.append(f'| {label} | {len(names) if label != START_LABEL else ""} | ' + ' | '.join(cells) + ' |')
    scales = ', '.join(f'{e} {study.scale[photo_set, e]:.3g}' for e in HELDOUT_METRIC)
    note = f"J scales (robust standard error of the start network's per-photo scores): {scales}."
    return '\n'.join(lines) + f'\n\n{note}\n'


def grid_table(study: Study) -> str:
    """The grid's mean NIQE J per setting on each photo set (the oracle is chosen on the selection photos)."""
    if len(study.settings) < 2:
        return ''
    oracle_setting, _ = study.oracle()
    sets = study.p['photo_sets']
    lines = [
        '| setting | seeds | ' + ' | '.join(f'mean NIQE, {s}' for s in sets) + ' |',
        '|---|---:|' + '---:|' * len(sets),
    ]
    for setting, runs in study.grid().items():
        label = next(iter(runs.values())).label + (' **(oracle)**' if setting == oracle_setting else '')
        cells = [f'{statistics.fmean(study.value(r.name, "niqe", s) for r in runs.values()):.3f}' for s in sets]
        lines.append(f'| {label} | {len(runs)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write_csv(path: Path, study: Study) -> None:
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        sets = study.p['photo_sets']
        w.writerow(
            ['run', 'label', 'seed', 'kind', 'policy', 'cpu_s']
            + [f'{m}_{s}' for s in sets for m in METRICS]
            + [f'J_{o}_{s}' for s in sets for o in OBJECTIVES]
        )
        for run in study.runs:
            w.writerow(
                [
                    run.name,
                    run.label,
                    run.seed,
                    run.kind,
                    run.policy or '',
                    study.took.get(run.name, {}).get('cpu_s', ''),
                ]
                + [repr(study.value(run.name, m, s)) for s in sets for m in METRICS]
                + [repr(study.J(run.name, o, s)) for s in sets for o in OBJECTIVES]
            )


def plot_seed(study: Study, out_dir: Path) -> list[Path]:
    """Seed 0: every policy's weights and validation scores side by side, and one figure per run."""
    from agent.runs.plot import load_records, plot_compare, plot_overview

    seed = min(r.seed for r in study.runs)
    picked = [study.default(seed)] + [r for r in study.runs if r.seed == seed and r.kind == 'policy']
    picked = [r for r in picked if r is not None]
    pngs = [
        plot_overview(load_records(r.root), out_dir / f'{r.name}.png', f'{r.label}, seed {seed}', log_y='on')
        for r in picked
    ]
    return pngs + plot_compare([r.root for r in picked], out_dir, log_y='on')
