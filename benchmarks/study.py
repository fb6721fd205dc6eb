"""Does adapting the loss weights toward an objective beat fixed and random weights? (CPU study)

    make study                                # = python benchmarks/study.py
    python benchmarks/study.py --smoke        # seconds; what tests/test_study.py runs
    python benchmarks/study.py --estimate     # print the plan and its runtime estimate, train nothing

The embedded task is the CPU demo's (options/train/demo_cpu.yml): a tiny SwinIR x2 on photos that
ship in scikit-image, loss repository L1 : SSIM : GAN = 1 : 0.5 : 0.01, experts NIQE and PSNR.

Protocol
1. One short L1 pre-training (lr 1e-3, cosine decay), trained once and reused: every run below
   fine-tunes from it, as the paper fine-tunes from a PSNR model.
2. For every seed: `fixed` and `random` (they never look at the objective, so one run each serves
   every objective), and per objective `adaptive` (and `llm` when LOSSAGENT_LLM_URL is set).
   All runs of one seed share `manual_seed` (same data order, same discriminator init, same
   per-iteration RNG) and the same pre-trained start; they differ only in the weights the policy
   sets at the stage boundaries.
   Objectives: `niqe` (NIQE alone) and `psnr_niqe` (PSNR + NIQE, equal weights on their relative
   gains, the way agent/objective.py combines experts).
3. The agent scores on crops of chelsea / stereo_motorcycle / retina (as the demo). The final
   checkpoints are evaluated by test.py on held-out photos (coffee, moon, gravel, clock,
   colorwheel) that neither training nor the agent ever saw: NIQE, PSNR, SSIM per seed, then
   mean ± std over seeds, the held-out objective value of each method, and paired differences
   against `fixed` (same seed).

Outputs: experiments/study_* (training runs) and --out (default benchmarks/study_runs/: option
files, per-seed test.py tables, the aggregated study_table.md/.csv, weight-curve PNGs, report).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

TRAIN_PHOTOS = ['astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'brick', 'grass',
                'camera', 'coins', 'cell']
AGENT_PHOTOS = ['chelsea', 'stereo_motorcycle', 'retina']
# colorwheel is left out: a synthetic graphic whose own ground truth scores NIQE ~28 (NIQE's model of
# natural scenes does not apply), so it would dominate the NIQE average without meaning anything.
HELDOUT_PHOTOS = ['coffee', 'moon', 'gravel', 'clock']

NETWORK_G = OrderedDict(type='SwinIR', upscale=2, in_chans=3, img_size=64, window_size=8, img_range=1.,
                        depths=[2, 2], embed_dim=32, num_heads=[2, 2], mlp_ratio=2,
                        upsampler='pixelshuffledirect', resi_connection='1conv')
NETWORK_D = OrderedDict(type='VGGStyleDiscriminator', num_in_ch=3, num_feat=16, input_size=128)
LOSSES = OrderedDict(
    L1={'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
    SSIM={'type': 'SSIMLoss', 'loss_weight': 0.5},
    GAN={'type': 'GANLoss', 'gan_type': 'vanilla', 'real_label_val': 1.0, 'fake_label_val': 0.0,
         'loss_weight': 0.01})
EXPERTS = OrderedDict(NIQE={'metric': 'niqe'},
                      PSNR={'metric': 'psnr', 'test_y_channel': True, 'crop_border': 2})
# objective name -> (label, {expert: weight in the objective}); lower-is-better is handled by the objective
OBJECTIVES = OrderedDict(
    niqe=('NIQE', {'NIQE': 1.0, 'PSNR': 0.0}),
    psnr_niqe=('PSNR+NIQE', {'NIQE': 1.0, 'PSNR': 1.0}),
)
POLICY_LABELS = {'fixed': 'Fixed', 'random': 'Random', 'adaptive': 'Adaptive', 'llm': 'LossAgent (LLM)'}
PRETRAINED = 'Pre-trained (L1)'
BICUBIC = 'Bicubic'

# Sizes. `full` is what `make study` runs; `smoke` is the seconds-long end-to-end check.
PROFILES = {
    'full': dict(seeds=[0, 1, 2], objectives=['niqe', 'psnr_niqe'], pretrain_iters=1500, pretrain_gt=64,
                 pretrain_batch=4, iters=500, stage_iters=50, gt_size=128, batch=4, lr=2e-4,
                 agent_crop=192, agent_crops_per_side=3, agent_min_std=0.1, eval_crop=192, eval_crops_per_side=2,
                 heldout=HELDOUT_PHOTOS, prefix='study'),
    'smoke': dict(seeds=[0], objectives=['niqe'], pretrain_iters=6, pretrain_gt=64, pretrain_batch=2,
                  iters=4, stage_iters=2, gt_size=128, batch=1, lr=2e-4,
                  agent_crop=96, agent_crops_per_side=1, agent_min_std=0.1, eval_crop=96, eval_crops_per_side=1,
                  heldout=['coffee'], prefix='study_smoke'),
}
# Seconds per item for one single-threaded process while two of them share the 2-core CPU, for the
# estimate: the fastest per-run figures measured in the study of 2026-11-23 (a training iteration
# 0.54 s, a 23-crop boundary 2.9 s; the machine was shared with other jobs, see benchmarks/study.md).
COST = dict(startup=8.0, pretrain_iter=0.1, iter=0.54, boundary_per_crop=0.13, eval_per_crop=0.08)


# ---------------------------------------------------------------------------------------------
# option files
def train_options(name: str, p: dict, seed: int, policy: dict | None, pretrained: str | None) -> dict:
    pretrain = policy is None
    losses = OrderedDict(L1=dict(LOSSES['L1'])) if pretrain else copy.deepcopy(LOSSES)
    iters = p['pretrain_iters'] if pretrain else p['iters']
    opt = OrderedDict(
        name=name, model_type='LossAgentModel', scale=2, num_gpu=0, manual_seed=seed,
        datasets={'train': OrderedDict(
            name='skimage_train', type='SkimagePhotoDataset', images=TRAIN_PHOTOS,
            gt_size=p['pretrain_gt'] if pretrain else p['gt_size'], use_hflip=True, use_rot=True,
            num_worker_per_gpu=0, batch_size_per_gpu=p['pretrain_batch'] if pretrain else p['batch'],
            dataset_enlarge_ratio=1000, prefetch_mode=None)},
        network_g=dict(NETWORK_G),
        path={'pretrain_network_g': pretrained, 'strict_load_g': True, 'resume_state': None},
        train=OrderedDict(
            ema_decay=0,
            optim_g={'type': 'Adam', 'lr': 1e-3 if pretrain else p['lr'], 'weight_decay': 0, 'betas': [0.9, 0.99]},
            scheduler=({'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'restart_weights': [1],
                        'eta_min': 1e-6} if pretrain else
                       {'type': 'MultiStepLR', 'milestones': [10 ** 6], 'gamma': 0.5}),
            total_iter=iters, warmup_iter=-1, losses=losses),
        logger={'print_freq': max(1, iters // 10), 'save_checkpoint_freq': 10 ** 7, 'use_tb_logger': False,
                'wandb': {'project': None, 'resume_id': None}},
        dist_params={'backend': 'gloo', 'port': 29500},
    )
    if not pretrain:
        opt['network_d'] = dict(NETWORK_D)
        opt['train']['optim_d'] = {'type': 'Adam', 'lr': p['lr'], 'weight_decay': 0, 'betas': [0.9, 0.99]}
        opt['train']['net_d_iters'] = 1
        opt['train']['net_d_init_iters'] = 0
        n_val = len(AGENT_PHOTOS) * p['agent_crops_per_side'] ** 2  # all crops (fewer after min_std)
        opt['agent'] = OrderedDict(
            stage_iters=p['stage_iters'], task='image super-resolution (x2)', num_images=n_val, image_seed=0,
            dataset={'name': 'skimage_agent_val', 'type': 'SkimagePhotoDataset', 'images': AGENT_PHOTOS,
                     'crop_size': p['agent_crop'], 'crops_per_side': p['agent_crops_per_side'],
                     'min_std': p['agent_min_std']},
            experts=copy.deepcopy(EXPERTS), policy=policy)
    return json.loads(json.dumps(opt))  # plain dicts, so yaml.safe_dump writes them


# agent/adaptive_policy.py strategies: `es` (the (1+1)-ES, the policy's default) and `paired`
# (antithetic probes scored by the change each stage made; probe size chosen before any result).
ADAPTIVE_STRATEGIES = {'es': {}, 'paired': {'strategy': 'paired', 'sigma': 0.5, 'max_move': 0.5}}
STRATEGY_LABELS = {'es': 'ES', 'paired': 'paired'}


def policy_options(policy: str, objective: str | None, strategy: str = 'es') -> dict:
    if policy in ('fixed', 'random'):
        return {'type': policy}
    weights = OBJECTIVES[objective][1]
    if policy == 'adaptive':
        return {'type': 'adaptive', 'objective_weights': dict(weights), **ADAPTIVE_STRATEGIES[strategy]}
    label = OBJECTIVES[objective][0]
    return {'type': 'llm', 'base_url': os.environ['LOSSAGENT_LLM_URL'],
            'extra_needs': [f'The goal is to improve {label} on the validation images'
                            + (' (both metrics matter equally).' if '+' in label else '.')]}


def llm_experts(objective: str) -> dict:
    """The LLM sees only the experts of its objective (the adaptive policy weights them instead)."""
    return {n: dict(EXPERTS[n]) for n, w in OBJECTIVES[objective][1].items() if w > 0}


class Run:
    def __init__(self, name: str, label: str, seed: int, policy: str, objective: str | None, opt: dict):
        self.name, self.label, self.seed, self.policy, self.objective, self.opt = \
            name, label, seed, policy, objective, opt

    @property
    def root(self) -> Path:
        return ROOT / 'experiments' / self.name

    @property
    def checkpoint(self) -> Path:
        return self.root / 'models' / 'net_g_latest.pth'


def plan(p: dict, llm: bool, pretrained: str, strategies=('es', 'paired')) -> list[Run]:
    runs = []
    for seed in p['seeds']:
        for policy in ('fixed', 'random'):
            name = f"{p['prefix']}_s{seed}_{policy}"
            runs.append(Run(name, POLICY_LABELS[policy], seed, policy, None,
                            train_options(name, p, seed, policy_options(policy, None), pretrained)))
        for objective in p['objectives']:
            variants = [('adaptive', s) for s in strategies] + ([('llm', None)] if llm else [])
            for policy, strategy in variants:
                kind = policy if strategy in (None, 'es') else f'{policy}-{strategy}'  # es keeps the plain name
                name = f"{p['prefix']}_s{seed}_{kind}_{objective}"
                opt = train_options(name, p, seed, policy_options(policy, objective, strategy), pretrained)
                if policy == 'llm':
                    opt['agent']['experts'] = llm_experts(objective)
                label = POLICY_LABELS[policy] + (f'-{STRATEGY_LABELS[strategy]}' if strategy else '')
                runs.append(Run(name, f'{label} ({OBJECTIVES[objective][0]})', seed, policy, objective, opt))
    return runs


# ---------------------------------------------------------------------------------------------
# running
def env_for(threads: int) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(x for x in (str(ROOT), env.get('PYTHONPATH')) if x)
    env['HF_HUB_OFFLINE'] = '1'
    env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(threads)
    return env


def source_hash() -> str:
    """Hash of the code a run depends on, so a changed policy never reuses an old run."""
    import hashlib
    h = hashlib.sha256()
    files = sorted([ROOT / 'train.py'] + [f for d in ('agent', 'lossagent_models', 'lossagent_data', 'lossagent_losses',
                                                     'lossagent_arch') for f in (ROOT / d).rglob('*') if f.is_file()
                                          and f.suffix in ('.py', '.txt')])
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def stamp(opt: dict) -> dict:
    return {'source': source_hash(), 'options': opt}


REUSE_ANY_CODE = False  # --reuse


def finished(run_root: Path, opt_path: Path, opt: dict) -> bool:
    """A previous run with the very same options and code (options only with --reuse) that reached
    its final checkpoint."""
    saved = run_root / 'study_options.yml'
    if not ((run_root / 'models' / 'net_g_latest.pth').exists() and saved.exists()):
        return False
    saved = yaml.safe_load(saved.read_text())
    return saved['options'] == opt if REUSE_ANY_CODE else saved == stamp(opt)


def start_training(name: str, opt: dict, out: Path, threads: int):
    """Write the option file and launch train.py; None when an identical finished run exists."""
    opt_path = out / 'options' / f'{name}.yml'
    opt_path.parent.mkdir(parents=True, exist_ok=True)
    opt_path.write_text(yaml.safe_dump(opt, sort_keys=False))
    run_root = ROOT / 'experiments' / name
    if finished(run_root, opt_path, opt):
        return None
    shutil.rmtree(run_root, ignore_errors=True)
    log = open(out / 'logs' / f'{name}.log', 'w')
    proc = subprocess.Popen([PY, str(ROOT / 'train.py'), '-opt', str(opt_path)], cwd=ROOT, env=env_for(threads),
                            stdout=log, stderr=subprocess.STDOUT)
    proc.study_log = log
    return proc


def finish_training(name: str, opt: dict, proc, out: Path) -> None:
    if proc is None:
        return
    rc = proc.wait()
    proc.study_log.close()
    if rc != 0:
        tail = (out / 'logs' / f'{name}.log').read_text()[-3000:]
        raise SystemExit(f'study: train.py failed for {name} (exit {rc}); log {out}/logs/{name}.log\n{tail}')
    (ROOT / 'experiments' / name / 'study_options.yml').write_text(yaml.safe_dump(stamp(opt), sort_keys=False))


def run_all(runs: list[Run], out: Path, jobs: int, threads: int, t0: float, est_per_run: float) -> None:
    pending, active, done, took = list(runs), [], 0, []
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            proc = start_training(run.name, run.opt, out, threads)
            if proc is None:
                print(f'  {run.name}: finished earlier with the same options, reused', flush=True)
                done += 1
                continue
            active.append((run, proc, time.time()))
        if not active:
            continue
        time.sleep(0.5)
        for item in list(active):
            run, proc, started = item
            if proc.poll() is None:
                continue
            finish_training(run.name, run.opt, proc, out)
            active.remove(item)
            done += 1
            took.append(time.time() - started)
            per_run = sum(took) / len(took)  # measured, not the estimate, once a run has finished
            left = len(active) + sum(1 for r in pending if not finished(r.root, None, r.opt))  # reused runs take no time
            elapsed = time.time() - t0
            print(f'  {run.name}: {took[-1]:.0f}s | {done}/{len(runs)} runs, '
                  f'{elapsed / 60:.1f} min so far, ~{left * per_run / jobs / 60:.0f} min of training left',
                  flush=True)


def eval_options(p: dict, seed: int, runs: list[Run], pretrained: str, results_root: Path) -> dict:
    methods = OrderedDict()
    methods[PRETRAINED] = {'pretrain_network_g': pretrained}
    for run in runs:
        if run.seed == seed:
            methods[run.label] = {'pretrain_network_g': str(run.checkpoint)}
    datasets = OrderedDict((photo, {'type': 'SkimagePhotoDataset', 'images': [photo], 'crop_size': p['eval_crop'],
                                    'crops_per_side': p['eval_crops_per_side']}) for photo in p['heldout'])
    return json.loads(json.dumps(OrderedDict(
        name=f"{p['prefix']}_eval_s{seed}",
        title=f'Held-out photos, seed {seed} (x2, {p["eval_crop"]}-px crops)',
        scale=2, num_gpu=0, manual_seed=0, path={'results_root': str(results_root)},
        network_g=dict(NETWORK_G), methods=methods, datasets=datasets,
        metrics=OrderedDict(niqe={'label': 'NIQE'}, psnr={'label': 'PSNR', 'crop_border': 2},
                            ssim={'label': 'SSIM', 'crop_border': 2}),
        val={'gt_row': True, 'save_images': False})))


# ---------------------------------------------------------------------------------------------
# aggregation
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
        for i, (row, cols) in enumerate(rows.items()):
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
# plots
def plot_run(run: Run, path: Path) -> Path:
    """Loss weights per stage (log scale) and the agent's validation NIQE / PSNR, one PNG per run."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    records = [json.loads(line) for line in (run.root / 'agent' / 'decisions.jsonl').read_text().splitlines()]
    records = [r for r in records if not r.get('superseded')]
    total = run.opt['train']['total_iter']
    names = list(records[0]['weights_after'])
    fig, (ax_w, ax_s) = plt.subplots(1, 2, figsize=(8, 2.8), dpi=80)
    for n in names:
        xs, ys = [], []
        for r in records:
            xs.append(r['applied_iteration'] - 1)
            ys.append(r['weights_after'][n])
        xs.append(total)
        ys.append(ys[-1])
        ax_w.step(xs, ys, where='post', label=n)
    ax_w.set_yscale('log')
    ax_w.set_xlabel('iteration')
    ax_w.set_title('loss weights', fontsize=9)
    ax_w.legend(fontsize=7)
    its = [r['iteration'] for r in records]
    ax_s.plot(its, [r['mean_scores'].get('NIQE') for r in records], 'o-', color='C3', label='NIQE ↓')
    ax_s.set_xlabel('iteration')
    ax_s.set_ylabel('NIQE', color='C3')
    if 'PSNR' in records[0]['mean_scores']:
        ax_p = ax_s.twinx()
        ax_p.plot(its, [r['mean_scores'].get('PSNR') for r in records], 's--', color='C0', label='PSNR ↑')
        ax_p.set_ylabel('PSNR (dB)', color='C0')
    ax_s.set_title('agent validation scores', fontsize=9)
    fig.suptitle(f'{run.label}, seed {run.seed}', fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
def versions() -> dict:
    import importlib.metadata as md
    out = {'python': platform.python_version()}
    for pkg in ('torch', 'basicsr', 'pyiqa', 'scikit-image'):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = 'n/a'
    return out


def estimate(p: dict, n_runs: int, n_methods_per_seed: int, jobs: int) -> float:
    c = COST
    pre = c['startup'] + p['pretrain_iters'] * c['pretrain_iter']
    n_val = len(AGENT_PHOTOS) * p['agent_crops_per_side'] ** 2
    per_run = c['startup'] + p['iters'] * c['iter'] + (p['iters'] // p['stage_iters'] + 1) * n_val * c['boundary_per_crop']
    n_eval = len(p['heldout']) * p['eval_crops_per_side'] ** 2
    ev = len(p['seeds']) * (c['startup'] + (n_methods_per_seed + 1) * n_eval * c['eval_per_crop'])
    speedup = max(1, min(jobs, os.cpu_count() or 1))  # single-threaded processes, one per core
    return pre + n_runs * per_run / speedup + ev, per_run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--smoke', action='store_true', help='tiny end-to-end check (1 seed, few iterations, 1 objective)')
    ap.add_argument('--out', default=None, help='working folder (default benchmarks/study_runs, '
                                                'benchmarks/study_runs/smoke with --smoke)')
    ap.add_argument('--seeds', type=int, nargs='+', help='override the seeds')
    ap.add_argument('--iters', type=int, help='override the fine-tuning iterations per run')
    ap.add_argument('--jobs', type=int, default=2, help='training processes at once (default 2: one per core)')
    ap.add_argument('--threads', type=int, default=1,
                    help='torch threads per process (default 1: results do not depend on --jobs, and a shared '
                         'machine does not oversubscribe; 2 threads were 5-10x slower with other jobs running)')
    ap.add_argument('--estimate', action='store_true', help='print the plan and the runtime estimate only')
    ap.add_argument('--adaptive', nargs='+', choices=sorted(ADAPTIVE_STRATEGIES), default=['es', 'paired'],
                    help='strategies of the adaptive policy to run (default: es paired; agent/adaptive_policy.py)')
    ap.add_argument('--reuse', action='store_true',
                    help='reuse finished runs with identical options even when the code changed since '
                         '(default: only when the code hash matches too)')
    ap.add_argument('--prefix', default=None, help='experiment name prefix (default study, study_smoke with --smoke)')
    ap.add_argument('--plots', default=None, help='also copy the seed-0 weight-curve PNGs into this folder')
    args = ap.parse_args(argv)

    p = dict(PROFILES['smoke' if args.smoke else 'full'])
    if args.seeds:
        p['seeds'] = args.seeds
    if args.iters:
        p['iters'] = args.iters
    if args.prefix:
        p['prefix'] = args.prefix
    out = Path(args.out or (ROOT / 'benchmarks' / 'study_runs' / ('smoke' if args.smoke else ''))).resolve()
    for sub in ('options', 'logs', 'results', 'plots'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    llm = bool(os.environ.get('LOSSAGENT_LLM_URL'))
    pre_name = f"{p['prefix']}_pretrain"
    pretrained = str(ROOT / 'experiments' / pre_name / 'models' / 'net_g_latest.pth')
    global REUSE_ANY_CODE
    REUSE_ANY_CODE = args.reuse
    runs = plan(p, llm, pretrained, args.adaptive)
    per_seed = len(runs) // len(p['seeds'])
    est, per_run = estimate(p, len(runs), per_seed, args.jobs)

    print(f'study: {"SMOKE " if args.smoke else ""}{len(runs)} fine-tuning runs = {len(p["seeds"])} seed(s) x '
          f'[fixed, random (shared by all objectives)] + adaptive{" + llm" if llm else ""} x objectives '
          f'{p["objectives"]} (adaptive strategies: {" ".join(args.adaptive)}); {p["iters"]} iterations each, '
          f'a stage every {p["stage_iters"]}; '
          f'from one L1 pre-training of {p["pretrain_iters"]} iterations.')
    if not llm:
        print('study: llm policy skipped: no endpoint configured (set LOSSAGENT_LLM_URL=http://host:port/v1 to add it)')
    print(f'study: estimated wall time {est / 60:.1f} min with --jobs {args.jobs} --threads {args.threads} '
          f'(from per-run costs measured on a shared 2-core CPU; this machine has {os.cpu_count()} cores; '
          f'longer while other jobs use them)', flush=True)
    if args.estimate:
        return 0

    t0 = time.time()
    print(f'study: [1/4] L1 pre-training ({p["pretrain_iters"]} iterations, lr 1e-3 cosine)', flush=True)
    pre_opt = train_options(pre_name, p, 0, None, None)
    finish_training(pre_name, pre_opt, start_training(pre_name, pre_opt, out, args.threads), out)
    t_pre = time.time() - t0
    print(f'  pre-training: {t_pre:.0f}s', flush=True)

    print(f'study: [2/4] fine-tuning runs ({args.jobs} at a time)', flush=True)
    run_all(runs, out, args.jobs, args.threads, t0, per_run)
    t_train = time.time() - t0 - t_pre

    print('study: [3/4] held-out evaluation with test.py', flush=True)
    csvs = []
    for seed in p['seeds']:
        eopt = eval_options(p, seed, runs, pretrained, out / 'results')
        path = out / 'options' / f"{eopt['name']}.yml"
        path.write_text(yaml.safe_dump(eopt, sort_keys=False, allow_unicode=True))
        with open(out / 'logs' / f"{eopt['name']}.log", 'w') as log:
            rc = subprocess.run([PY, str(ROOT / 'test.py'), '-opt', str(path)], cwd=ROOT, env=env_for(args.threads),
                                stdout=log, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            raise SystemExit(f'study: test.py failed for seed {seed}; log {out}/logs/{eopt["name"]}.log')
        csvs.append(out / 'results' / eopt['name'] / f"{eopt['name']}.csv")
    t_eval = time.time() - t0 - t_pre - t_train

    print('study: [4/4] tables and plots', flush=True)
    sys.path.insert(0, str(ROOT))
    tables = read_seed_tables(csvs)
    bicubic = bicubic_scores(eval_options(p, p['seeds'][0], [], pretrained, out / 'results'))
    for table in tables:
        add_row(table, BICUBIC, bicubic, PRETRAINED)
    blocks, directions, labels, columns = aggregate(tables, p['objectives'])
    decimals = {'niqe': 2, 'psnr': 2, 'ssim': 4, 'objective': 2}
    n = len(p['seeds'])
    table_md = render(blocks, directions, labels, columns, decimals,
                      f'Held-out photos (never seen by training or the agent), x2, {n} seed(s), '
                      f'adaptive strategies {", ".join(args.adaptive)}', n)
    paired_md = paired(blocks, columns, p['objectives'], n)
    (out / 'study_table.md').write_text(table_md + '\n' + paired_md)
    write_csv(out / 'study_table.csv', blocks, columns)
    first = [run for run in runs if run.seed == p['seeds'][0]]
    pngs = [plot_run(run, out / 'plots' / f'{run.name}.png') for run in first]
    try:  # the shared plotting module, when this checkout has it: all policies of one seed side by side
        from agent.plot import plot_compare
        pngs += plot_compare([run.root for run in first], out / 'plots', log_y='on')
    except ImportError:
        pass
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        for png in pngs:
            shutil.copy(png, Path(args.plots) / Path(png).name)
    wall = time.time() - t0
    report = {
        'command': ' '.join([Path(PY).name, 'benchmarks/study.py'] + (argv if argv is not None else sys.argv[1:])),
        'date_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'versions': versions(),
        'adaptive': args.adaptive, 'reuse': args.reuse, 'source': source_hash(), 'cpus': os.cpu_count(), 'jobs': args.jobs,
        'threads': args.threads, 'llm': llm, 'profile': p,
        'wall_s': round(wall, 1), 'pretrain_s': round(t_pre, 1), 'training_s': round(t_train, 1),
        'eval_s': round(t_eval, 1), 'estimate_s': round(est, 1), 'runs': [r.name for r in runs],
    }
    (out / 'study_report.json').write_text(json.dumps(report, indent=1))
    print(table_md)
    print(paired_md)
    print(f'study: wall time {wall / 60:.1f} min (pre-training {t_pre:.0f}s, fine-tuning {t_train:.0f}s, '
          f'evaluation {t_eval:.0f}s; estimate was {est / 60:.1f} min); tables in {out}/study_table.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
