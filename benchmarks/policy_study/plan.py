"""What the study trains and evaluates: the task, its sizes, and the option file of every run.

The embedded task is the CPU demo's (options/train/demo_cpu.yml): a tiny SwinIR x2 on photos that
ship in scikit-image, loss repository L1 : SSIM : GAN = 1 : 0.5 : 0.01, experts NIQE and PSNR.
"""
from __future__ import annotations

import copy
import json
import os
from collections import OrderedDict
from pathlib import Path

from . import ROOT

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

def estimate(p: dict, n_runs: int, n_methods_per_seed: int, jobs: int) -> float:
    c = COST
    pre = c['startup'] + p['pretrain_iters'] * c['pretrain_iter']
    n_val = len(AGENT_PHOTOS) * p['agent_crops_per_side'] ** 2
    boundaries = p['iters'] // p['stage_iters'] + 1
    per_run = c['startup'] + p['iters'] * c['iter'] + boundaries * n_val * c['boundary_per_crop']
    n_eval = len(p['heldout']) * p['eval_crops_per_side'] ** 2
    ev = len(p['seeds']) * (c['startup'] + (n_methods_per_seed + 1) * n_eval * c['eval_per_crop'])
    speedup = max(1, min(jobs, os.cpu_count() or 1))  # single-threaded processes, one per core
    return pre + n_runs * per_run / speedup + ev, per_run
