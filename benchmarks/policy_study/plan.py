"""What the study trains and evaluates: the task, its sizes, and the option file of every run.

The task is the CPU demo's, read from options/train/demo_cpu.yml: a tiny SwinIR x4 fine-tuned from
the shipped L1-pretrained start (scripts/make_demo_start.py) on photos that ship in
scikit-image, loss repository L1 : SSIM : GAN, an EMA generator (the network users deploy, and the
one evaluated), 300 iterations instead of the demo's 500 (the time budget). Every run of one seed
shares `manual_seed` (data order, discriminator initialisation, per-iteration random numbers) and
the start; runs differ only in how the loss weights are set.

1. The sweep: fixed weightings on a grid of x0.1 / x1 / x10 of each non-anchor weight. The
   default (x1, x1) is "Fixed"; the best setting in hindsight on an objective is its oracle.
2. The policies, per objective: random (the paper's baseline, objective-blind), adaptive (es,
   paired), lookahead, and llm when LOSSAGENT_LLM_URL is set. Their experts are the objective's.
3. The stage signal: one more default run per diagnostic seed, scoring the GAN-trained `net_g` at
   the boundary alone (what the first study did), beside the default run that scores the EMA
   network averaged over snapshots; its training is identical (scoring never touches it).
"""
from __future__ import annotations

import copy
import itertools
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from . import ROOT

DEMO_OPT = ROOT / 'options' / 'train' / 'demo_cpu.yml'
START = ROOT / 'experiments' / 'pretrained_models' / 'demo_swinir_x4_l1.pth'
# The photo split of benchmarks/protocol.md. Training and the agent's validation photos are the demo's
# (options/train/demo_cpu.yml). Selection photos choose the oracle, the best schedule and any constant
# (the held-out set of both earlier studies: already seen). The final-test photos are opened once, by
# the confirmatory run, for the headline numbers (matplotlib's and pyiqa's packaged photos, offline).
# Left out: colorwheel (a synthetic graphic whose own ground truth scores NIQE ~28), skimage's cat (=
# chelsea), the motorcycle's right view (= the agent's left view), graphics and images under 192 px.
SELECTION_PHOTOS = ['coffee', 'moon', 'gravel', 'clock']
TEST_PHOTOS = ['grace_hopper', 'kodim03', 'kodim04', 'kodim06', 'kodim08', 'kodim19']
HELDOUT_PHOTOS = SELECTION_PHOTOS  # what pilots and --quick evaluate: never the final-test photos


def photo_split() -> dict[str, list[str]]:
    """{'train', 'agent', 'selection', 'test'}: the four sets (tests/test_study_stats.py: disjoint)."""
    demo = demo_options()
    return {'train': list(demo['datasets']['train']['images']), 'agent': list(demo['agent']['dataset']['images']),
            'selection': list(SELECTION_PHOTOS), 'test': list(TEST_PHOTOS)}


@dataclass(frozen=True)
class Objective:
    label: str
    experts: dict            # agent expert name -> weight in the objective
    note: str = ''


# the agent's experts and their held-out metric (test.py metric key, lower is better)
EXPERTS = OrderedDict(NIQE={'metric': 'niqe'},
                      PSNR={'metric': 'psnr', 'test_y_channel': True, 'crop_border': 4})
HELDOUT_METRIC = {'NIQE': ('niqe', True), 'PSNR': ('psnr', False)}
OBJECTIVES = OrderedDict(
    niqe=Objective('NIQE', {'NIQE': 1.0}, 'no-reference'),
    psnr_niqe=Objective('PSNR+NIQE', {'PSNR': 1.0, 'NIQE': 1.0}, 'the double objective: fidelity and naturalness'),
)
POLICIES = OrderedDict(
    random=('Random', {'type': 'random'}),
    es=('Adaptive-ES', {'type': 'adaptive'}),
    paired=('Adaptive-paired', {'type': 'adaptive', 'strategy': 'paired', 'sigma': 0.5, 'max_move': 0.5}),
    lookahead=('Lookahead', {'type': 'lookahead', 'candidates': 3, 'probe_iters': 10}),
)
OBJECTIVE_BLIND = ('random',)
FIXED, ORACLE, START_LABEL = 'Fixed', 'Oracle fixed', 'Start (L1)'

PROFILES = {
    # make study: 5 seeds, a 3x3 sweep, both objectives; the demo's 500 iterations cut to 300 so that
    # the 82 runs fit in an hour on 2 cores (at 500: ~90 min, measured)
    'full': dict(seeds=[0, 1, 2, 3, 4], objectives=['niqe', 'psnr_niqe'], iters=300, stage_iters=50,
                 multipliers=[0.1, 1.0, 10.0], policies=list(POLICIES), diagnostic_seeds=[0, 1],
                 agent_crops_per_side=3, eval_crops_per_side=3, prefix='study'),
    # --quick: the same protocol in about a quarter of the time (2 seeds, one objective, two policies, smaller crops)
    'quick': dict(seeds=[0, 1], objectives=['niqe'], iters=300, stage_iters=50, multipliers=[0.1, 1.0, 10.0],
                  policies=['random', 'lookahead'], diagnostic_seeds=[0], agent_crops_per_side=2,
                  eval_crops_per_side=2, prefix='study_quick'),
    # --smoke: seconds (tests/test_study.py)
    'smoke': dict(seeds=[0], objectives=['niqe'], iters=4, stage_iters=2, multipliers=[1.0, 10.0],
                  policies=['random', 'es', 'lookahead'], diagnostic_seeds=[0], agent_crops_per_side=1,
                  eval_crops_per_side=1, prefix='study_smoke', probe_iters=1, snapshots=1, heldout=['coffee'],
                  crop=96),
}


@dataclass
class Run:
    name: str
    label: str
    seed: int
    kind: str                    # sweep | policy | diagnostic
    opt: dict
    setting: Optional[tuple] = None      # sweep: the multipliers of the non-anchor weights
    objective: Optional[str] = None      # policy runs that look at an objective
    policy: Optional[str] = None
    extra: dict = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return ROOT / 'experiments' / self.name

    @property
    def checkpoint(self) -> Path:
        return self.root / 'models' / 'net_g_latest.pth'


def demo_options() -> dict:
    return json.loads(json.dumps(yaml.safe_load(DEMO_OPT.read_text())))  # plain dicts


def setting_label(setting: tuple, names: list[str]) -> str:
    return FIXED if all(m == 1.0 for m in setting) else \
        'Fixed ' + ', '.join(f'{n} x{m:g}' for n, m in zip(names, setting) if m != 1.0)


def options(p: dict, name: str, seed: int, weights: dict, policy: dict, experts: dict,
            score_network: str = 'ema', snapshots: Optional[int] = None, stage_iters: Optional[int] = None) -> dict:
    """The demo's option file with this run's name, seed, size, weights, policy and experts."""
    opt = demo_options()
    opt.update(name=name, manual_seed=seed, num_gpu=0)
    opt['path']['pretrain_network_g'] = str(START)
    opt['train']['total_iter'] = p['iters']
    for loss, weight in weights.items():
        opt['train']['losses'][loss]['loss_weight'] = weight
    agent = opt['agent']
    agent.update(stage_iters=stage_iters or p['stage_iters'], policy=policy, experts=experts,
                 score_network=score_network)
    n_snap = p.get('snapshots', agent.get('snapshots', 1)) if snapshots is None else snapshots
    agent.update(snapshots=n_snap)
    if n_snap == 1:
        agent.pop('snapshot_every', None)
    agent['dataset']['crops_per_side'] = p['agent_crops_per_side']
    agent['num_images'] = len(agent['dataset']['images']) * p['agent_crops_per_side'] ** 2
    if 'crop' in p:
        agent['dataset']['crop_size'] = p['crop']
    if policy['type'] == 'lookahead' and 'probe_iters' in p:
        policy['probe_iters'] = p['probe_iters']
    opt['logger'].update(print_freq=max(1, p['iters'] // 10), save_checkpoint_freq=10 ** 7, use_tb_logger=False)
    return opt


def objective_experts(objective: str) -> dict:
    return {n: {**EXPERTS[n], 'weight': w} for n, w in OBJECTIVES[objective].experts.items()}


def plan(p: dict, llm_url: Optional[str]) -> list[Run]:
    base = demo_options()['train']['losses']
    names = list(base)
    anchor, free = names[0], names[1:]
    default = {n: float(base[n]['loss_weight']) for n in names}
    all_experts = {n: dict(e) for n, e in EXPERTS.items()}
    policies = OrderedDict((k, POLICIES[k]) for k in p['policies'])
    if llm_url:
        policies['llm'] = ('LossAgent (LLM)', {'type': 'llm', 'base_url': llm_url})
    runs = []
    for seed in p['seeds']:
        for setting in itertools.product(p['multipliers'], repeat=len(free)):
            weights = {anchor: default[anchor], **{n: float(f'{default[n] * m:.6g}') for n, m in zip(free, setting)}}
            is_default = all(m == 1.0 for m in setting)
            tag = 'default' if is_default else '_'.join(f'{n}x{m:g}' for n, m in zip(free, setting))
            name = f"{p['prefix']}_s{seed}_fixed_{tag}"
            # only the default's stage scores are read (the stage signal); the other fixed settings are
            # judged on the held-out photos alone, so they skip the boundaries (training is the same)
            quiet = {} if is_default else dict(stage_iters=p['iters'], snapshots=1)
            runs.append(Run(name, setting_label(setting, free), seed, 'sweep',
                            options(p, name, seed, weights, {'type': 'fixed'}, all_experts, **quiet), setting=setting))
        if seed in p['diagnostic_seeds']:
            name = f"{p['prefix']}_s{seed}_fixed_raw_signal"
            runs.append(Run(name, 'Fixed, raw stage signal', seed, 'diagnostic',
                            options(p, name, seed, default, {'type': 'fixed'}, all_experts, score_network='net_g',
                                    snapshots=1)))
        for key, (label, policy) in policies.items():
            for objective in ([None] if key in OBJECTIVE_BLIND else p['objectives']):
                experts = all_experts if objective is None else objective_experts(objective)
                suffix = '' if objective is None else f'_{objective}'
                name = f"{p['prefix']}_s{seed}_{key}{suffix}"
                policy_opt = copy.deepcopy(policy)
                if key == 'llm':
                    policy_opt['extra_needs'] = [f'The goal is to improve {OBJECTIVES[objective].label} on the '
                                                 'validation images.']
                full_label = label if objective is None else f'{label} ({OBJECTIVES[objective].label})'
                runs.append(Run(name, full_label, seed, 'policy', options(p, name, seed, default, policy_opt, experts),
                                objective=objective, policy=key))
    return runs


def eval_options(p: dict, seed: int, runs: list[Run], results_root: Path) -> dict:
    """test.py on one seed's networks: the deployed (EMA) generator of every run, the start, held-out photos."""
    demo = demo_options()
    methods = OrderedDict([(START_LABEL, {'pretrain_network_g': str(START)})])
    for run in runs:
        if run.seed == seed and run.kind != 'diagnostic':
            methods[run.name] = {'pretrain_network_g': str(run.checkpoint), 'param_key_g': 'params_ema'}
    photos = p.get('heldout', HELDOUT_PHOTOS)
    datasets = OrderedDict((photo, {'type': 'SkimagePhotoDataset', 'images': [photo], 'crop_size': p.get('crop', 192),
                                    'crops_per_side': p['eval_crops_per_side'], 'min_std': 0.05})
                           for photo in photos)
    scale = demo['scale']
    return json.loads(json.dumps(OrderedDict(
        name=f"{p['prefix']}_eval_s{seed}", title=f'Held-out photos, seed {seed}',
        scale=scale, num_gpu=0, manual_seed=0, path={'results_root': str(results_root)},
        network_g=demo['network_g'], methods=methods, datasets=datasets,
        metrics=OrderedDict(niqe={'label': 'NIQE'}, psnr={'label': 'PSNR', 'crop_border': scale},
                            ssim={'label': 'SSIM', 'crop_border': scale}),
        val={'gt_row': True, 'save_images': False})))

