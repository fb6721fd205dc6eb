"""From the per-seed test.py tables to the study's tables: mean +- std over seeds, the held-out
objective, paired differences against Fixed, the CSV, and one figure per run (agent.plot)."""
from __future__ import annotations

import csv
import math
from collections import OrderedDict
from pathlib import Path

from .plan import BICUBIC, OBJECTIVES, PRETRAINED

def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s

def read_seed_tables(paths: list[Path]):
    from lossagent_eval.tables import BenchmarkTable
    return [BenchmarkTable.read_csv(str(path)) for path in paths]

def bicubic_scores(eval_opt: dict) -> dict:
    """{metric: {dataset: mean}} of MATLAB-bicubic x2 upsampling, scored the way test.py scores a method."""
    import numpy as np
    import lossagent_compat  # noqa: F401
    import lossagent_data  # noqa: F401
    from basicsr.data import build_dataset
    from basicsr.utils import tensor2img
    from basicsr.utils.matlab_functions import imresize
    from lossagent_eval.benchmark import Metric, _dataset_opts
    opt = dict(eval_opt, _file='(study)')
    metrics = {k: Metric(k, m, 2, 'cpu') for k, m in opt['metrics'].items()}
    out = {k: {} for k in metrics}
    for name, dopt in _dataset_opts(opt).items():
        vals = {k: [] for k in metrics}
        dataset = build_dataset(dopt)
        for i in range(len(dataset)):
            item = dataset[i]
            lq = item['lq'].numpy().transpose(1, 2, 0)
            up = np.clip(imresize(lq, 2), 0, 1).transpose(2, 0, 1)
            import torch
            img, gt = tensor2img(torch.from_numpy(np.ascontiguousarray(up))), tensor2img(item['gt'])
            for k, m in metrics.items():
                vals[k].append(m(img, gt))
        for k in metrics:
            out[k][name] = float(np.mean(vals[k]))
    return out

def add_row(table, row: str, scores: dict, before: str) -> None:
    table.rows.insert(table.rows.index(before), row)
    for metric in table.metrics:
        table.scores[metric][row] = {d: scores.get(metric, {}).get(d) for d in table.datasets}

def objective_value(table, method: str, objective: str, column: str) -> float:
    """The held-out counterpart of agent/objective.py: weighted mean of the signed relative gains
    against the pre-trained network (here on the per-photo means, not per crop)."""
    weights = OBJECTIVES[objective][1]
    gains, total = 0.0, 0.0
    for expert, w in weights.items():
        if w <= 0:
            continue
        metric = expert.lower()
        ref, now = table.value(metric, PRETRAINED, column), table.value(metric, method, column)
        sign = -1.0 if table.directions[metric] else 1.0
        gains += w * sign * (now - ref) / abs(ref)
        total += w
    return gains / total

def aggregate(tables, objectives: list[str]):
    """{block: {row: {column: [per-seed values]}}}, directions, labels, columns."""
    from lossagent_eval.tables import AVG, REF_ROW
    t0 = tables[0]
    columns = t0.datasets + [AVG]
    blocks, directions, labels = OrderedDict(), {}, {}
    for metric in t0.metrics:
        key = metric
        directions[key] = t0.directions[metric]
        labels[key] = {'niqe': 'NIQE', 'psnr': 'PSNR', 'ssim': 'SSIM'}.get(metric, metric.upper())
        blocks[key] = OrderedDict()
        for row in t0.metric_rows(metric):
            blocks[key][row] = {c: [t.value(metric, row, c) for t in tables] for c in columns}
    for objective in objectives:
        key = f'objective:{objective}'
        directions[key] = False
        labels[key] = f'Objective {OBJECTIVES[objective][0]} (rel. gain, %)'
        blocks[key] = OrderedDict()
        for row in t0.rows:
            if row in (REF_ROW,):
                continue
            blocks[key][row] = {c: [100 * objective_value(t, row, objective, c) for t in tables] for c in columns}
    return blocks, directions, labels, columns

def render(blocks, directions, labels, columns, decimals, title: str, n_seeds: int) -> str:
    from lossagent_eval.tables import REF_ROW
    lines = [f'## {title}', '', '| Metrics | Methods | ' + ' | '.join(columns) + ' |',
             '|---|---|' + '---:|' * len(columns)]
    for key, rows in blocks.items():
        d = decimals.get(key.split(':')[0], 2)
        stats = {r: {c: mean_std(v) for c, v in cols.items()} for r, cols in rows.items()}
        best = {}
        for c in columns:
            means = [round(stats[r][c][0], d) for r in rows if r != REF_ROW]
            best[c] = min(means) if directions[key] else max(means)
        for i, row in enumerate(rows):
            cells = []
            for c in columns:
                m, s = stats[row][c]
                text = f'{m:.{d}f}' + (f' ± {s:.{d}f}' if n_seeds > 1 and row not in (PRETRAINED, BICUBIC, REF_ROW)
                                       else '')
                if row != REF_ROW and round(m, d) == best[c]:
                    text = f'**{text}**'
                cells.append(text)
            label = (labels[key] + ('↓' if directions[key] else '↑')) if i == 0 else ''
            lines.append(f'| {label} | {row} | ' + ' | '.join(cells) + ' |')
    lines += ['', f'Mean ± sample std over {n_seeds} seed(s); ↑ / ↓: higher / lower is better; best mean per '
              f'column in bold (at the printed precision). {PRETRAINED} is the common start of every run and {BICUBIC} '
              f'MATLAB-style bicubic upsampling (both the same for every seed: no std). '
              f'{REF_ROW}: NIQE of the ground truth, not ranked. Objective rows: the signed relative gain over '
              f'{PRETRAINED} of the objective\'s experts (equal weights), in percent.', '']
    return '\n'.join(lines)

def paired(blocks, columns, objectives: list[str], n_seeds: int) -> str:
    """Per-seed differences against Fixed (same seed, same data order) on the Avg. column."""
    from lossagent_eval.tables import AVG
    keys = ['niqe', 'psnr', 'ssim'] + [f'objective:{o}' for o in objectives]
    names = {'niqe': 'ΔNIQE (↓ better)', 'psnr': 'ΔPSNR dB (↑)', 'ssim': 'ΔSSIM (↑)'}
    names.update({f'objective:{o}': f'Δobjective {OBJECTIVES[o][0]} %-pts (↑)' for o in objectives})
    methods = [r for r in blocks['psnr'] if r not in (BICUBIC, PRETRAINED, 'Fixed')]
    lines = ['## Paired differences against Fixed (same seed), held-out Avg.', '',
             '| Method | ' + ' | '.join(names[k] for k in keys) + ' |', '|---|' + '---:|' * len(keys)]
    for m in methods:
        cells = []
        for k in keys:
            diffs = [a - b for a, b in zip(blocks[k][m][AVG], blocks[k]['Fixed'][AVG])]
            mean, std = mean_std(diffs)
            lower = k == 'niqe'
            wins = sum(1 for x in diffs if (x < 0 if lower else x > 0))
            d = 4 if k == 'ssim' else 2
            cells.append(f'{mean:+.{d}f} ± {std:.{d}f} ({wins}/{n_seeds} better)')
        lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'Difference method − Fixed per seed, mean ± std over seeds; "better" counts the seeds where the '
              'method beat Fixed on that column.', '']
    return '\n'.join(lines)

def write_csv(path: Path, blocks, columns) -> None:
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        w.writerow(['block', 'method', 'column', 'mean', 'std', 'per_seed'])
        for key, rows in blocks.items():
            for row, cols in rows.items():
                for c, vals in cols.items():
                    m, s = mean_std(vals)
                    w.writerow([key, row, c, repr(m), repr(s), ' '.join(repr(v) for v in vals)])


# ---------------------------------------------------------------------------------------------

def plot_run(run, path: Path) -> Path:
    """The run's loss weights (log scale) and its validation scores per stage, one PNG (agent.plot)."""
    from agent.plot import load_records, plot_overview
    return plot_overview(load_records(run.root), path, f'{run.label}, seed {run.seed}', log_y='on')
