"""What the study trains and evaluates: the task, the arms of benchmarks/protocol.md, the option file

(Over ~400 lines on purpose: the protocol's arms, photo sets and profiles are read as one table.)
of every run, and what the plan should cost.

The task is the CPU demo's, read from options/train/demo_cpu.yml: a tiny SwinIR x4 fine-tuned from
the shipped L1-pretrained start (scripts/make_demo_start.py) on photos that ship in scikit-image,
loss repository L1 : SSIM : GAN, an EMA generator (the network users deploy, and the one evaluated),
300 iterations (a stage every 50). Every run of one seed shares `manual_seed` (data order,
discriminator initialisation, per-iteration random numbers) and the start; runs differ only in how
the loss weights are set. The arms (protocol.md, "Arms"):

    Fixed               the default weights; the reference of every comparison (primary seeds)
    grid                the 9 fixed settings x0.1 / x1 / x10 of each non-anchor weight (Fixed included)
    schedules           two-phase: one switch at half-time (the schedule policy)
    paired ... hybrid   the one-run policies (ARMS), each with its own policy seed per seed
    pbt                 Ray Tune's population-based training (benchmarks/policy_study/pbt.py)

Every policy runs on the NIQE objective (protocol: the PSNR+NIQE J is reported from the same runs).
A policy arm whose policy is not registered, or whose options it rejects, is left out with the
reason printed (the LLM arms join when issue 21 lands).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

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
PHOTO_SETS = OrderedDict(selection=SELECTION_PHOTOS, test=TEST_PHOTOS)
HELDOUT_PHOTOS = SELECTION_PHOTOS  # what pilots and --quick evaluate: never the final-test photos


def photo_split() -> dict[str, list[str]]:
    """{'train', 'agent', 'selection', 'test'}: the four sets (tests/test_study_stats.py: disjoint)."""
    demo = demo_options()
    return {
        'train': list(demo['datasets']['train']['images']),
        'agent': list(demo['agent']['dataset']['images']),
        'selection': list(SELECTION_PHOTOS),
        'test': list(TEST_PHOTOS),
    }


@dataclass(frozen=True)
class Objective:
    label: str
    experts: dict  # agent expert name -> weight in the objective
    note: str = ''


# the agent's experts and their held-out metric (test.py metric key, lower is better)
EXPERTS = OrderedDict(NIQE={'metric': 'niqe'}, PSNR={'metric': 'psnr', 'test_y_channel': True, 'crop_border': 4})
HELDOUT_METRIC = {'NIQE': ('niqe', True), 'PSNR': ('psnr', False)}
OBJECTIVES = OrderedDict(
    niqe=Objective('NIQE', {'NIQE': 1.0}, 'no-reference'),
    psnr_niqe=Objective('PSNR+NIQE', {'PSNR': 1.0, 'NIQE': 1.0}, 'the double objective: fidelity and naturalness'),
)
POLICY_OBJECTIVE = 'niqe'  # what every policy arm optimises (the primary endpoint's metric)


@dataclass(frozen=True)
class Arm:
    number: int  # protocol.md's arm number: the policy seed is 1000 * number + seed
    label: str
    policy: dict
    seeds: str = 'secondary'  # which of the profile's seed lists: primary | secondary
    cost: float = 1.0  # wall time of one run over a Fixed run's (the plan's estimate only)


FIXED_ARM, GRID_ARM, SCHEDULE_ARM, PBT_ARM = 1, 7, 8, 9
# lookahead's min_gain, in objective units (one unit = one robust standard error of the validation mean):
# a challenger must beat the incumbent by more than the probes' noise (protocol.md, amendment 1)
LOOKAHEAD_MIN_GAIN = 1.0
PAIRED = {'type': 'adaptive', 'strategy': 'paired', 'sigma': 0.5, 'max_move': 0.5}
# the LLM arms' model: the demo's (options/train/demo_cpu.yml), one prompt a boundary (per-image prompts
# take minutes a boundary with this model on a CPU)
EMBEDDED = {'backend': 'llamacpp', 'model_path': 'embedded', 'structured_output': 'grammar', 'per_image': False}
ARMS = OrderedDict(
    paired=Arm(2, 'Adaptive-paired', PAIRED, seeds='primary'),
    paired_random=Arm(3, 'Paired, random signs', {**PAIRED, 'signs': 'random'}),
    lookahead=Arm(
        4,
        'Lookahead',
        {
            'type': 'lookahead',
            'candidates': 3,
            'probe_iters': 10,
            'probe_network': 'ema',
            'sigma_adapt': False,
            'min_gain': LOOKAHEAD_MIN_GAIN,
        },
        cost=1.5,
    ),
    llm=Arm(5, 'LLM, embedded', {'type': 'llm', **EMBEDDED}, cost=1.5),
    hybrid=Arm(
        6,
        'Hybrid',
        {'type': 'hybrid', 'optimizer': {k: v for k, v in PAIRED.items() if k != 'type'}, **EMBEDDED},
        cost=1.5,
    ),
)
# two-phase schedules: (multiplier of GAN before, after) the switch at half-time, SSIM x1
SCHEDULES = OrderedDict(gan_up=(0.1, 1.0), gan_down=(1.0, 0.1))
FIXED, ORACLE, START_LABEL, PBT_LABEL = 'Fixed', 'Oracle fixed', 'Start (L1)', 'PBT (Ray Tune)'

# The plan's cost model, in CPU seconds of one single-threaded process (the wall time is their sum over
# --jobs, on cores of their own). Pilots on the selection photos, 2026-12-05, on a shared machine whose
# load stretched wall times ~5x but not CPU seconds: a Fixed run 77 CPU s (the 2026-12-02 study: 82 runs
# in 59 min on 2 idle cores, ~82 s a run); a PBT population (4 x 300 iterations in 24 train.py processes) 425.
RUN_CPU_S = 82.0  # a Fixed run of 300 iterations with its 6 boundaries
QUIET_COST = 0.85  # a grid run that skips the boundaries (scored on held-out photos alone)
SCHEDULE_COST = 0.9  # a schedule run: 2 boundaries
PBT_COST = 5.2  # a PBT seed: 4 members x 6 stages, each a train.py process (pilot: 425 CPU s)
EVAL_CPU_S_PER_IMAGE = 0.07  # test.py, one network on one 192-px crop (NIQE, PSNR, SSIM)

PROFILES = {
    # make study: the protocol's seeds (24 primary, 10 secondary, PBT 2: amendment 1), both photo sets
    'full': dict(
        seeds=list(range(24)),
        secondary_seeds=list(range(10)),
        pbt_seeds=[0, 1],
        iters=300,
        stage_iters=50,
        multipliers=[0.1, 1.0, 10.0],
        arms=list(ARMS),
        schedules=list(SCHEDULES),
        photo_sets=['selection', 'test'],
        agent_crops_per_side=3,
        eval_crops_per_side=3,
        prefix='study',
        # protocol.md's cut order, when the plan does not fit: these arms would run on the first N
        # secondary seeds only ({'schedules': 5, ...}); the primary seeds are never cut. Amendment 1:
        # only the first cut (PBT to 2 seeds) was needed
        cut_seeds={},
    ),
    # --quick: every kind of arm in <= 20 min: 2 seeds, a 2x2 grid, one PBT seed, selection photos only,
    # smaller crops (the LLM arms stay out: their time is the full study's question)
    'quick': dict(
        seeds=[0, 1],
        secondary_seeds=[0, 1],
        pbt_seeds=[0],
        iters=300,
        stage_iters=50,
        multipliers=[1.0, 10.0],
        arms=['paired', 'paired_random', 'lookahead'],
        schedules=list(SCHEDULES),
        photo_sets=['selection'],
        agent_crops_per_side=2,
        eval_crops_per_side=2,
        prefix='study_quick',
    ),
    # --smoke: seconds (tests/test_study.py); PBT has its own smoke test (tests/test_pbt.py)
    'smoke': dict(
        seeds=[0],
        secondary_seeds=[0],
        pbt_seeds=[],
        iters=4,
        stage_iters=2,
        multipliers=[1.0, 10.0],
        arms=['paired', 'paired_random', 'lookahead'],
        schedules=['gan_down'],
        photo_sets=['selection'],
        agent_crops_per_side=1,
        eval_crops_per_side=1,
        prefix='study_smoke',
        probe_iters=1,
        snapshots=1,
        photos={'selection': ['coffee']},
        crop=96,
    ),
}


@dataclass
class Run:
    name: str
    label: str
    seed: int
    kind: str  # sweep | policy | schedule | pbt
    opt: dict
    setting: tuple | None = None  # sweep: the multipliers of the non-anchor weights
    objective: str | None = None  # policy runs: the objective their experts score
    policy: str | None = None  # policy: the ARMS key; schedule: the SCHEDULES key
    cost: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return ROOT / 'experiments' / self.name

    @property
    def checkpoint(self) -> Path:
        return self.root / 'models' / 'net_g_latest.pth'


@functools.lru_cache(maxsize=1)
def _demo_json() -> str:
    return json.dumps(yaml.safe_load(DEMO_OPT.read_text()))


def demo_options() -> dict:
    """A fresh copy of options/train/demo_cpu.yml as plain dicts."""
    return json.loads(_demo_json())


def loss_names() -> list[str]:
    return list(demo_options()['train']['losses'])


def default_weights() -> dict[str, float]:
    base = demo_options()['train']['losses']
    return {n: float(base[n]['loss_weight']) for n in base}


def scaled(multipliers: tuple) -> dict[str, float]:
    """The default weights with the non-anchor ones multiplied (6 significant digits)."""
    default, names = default_weights(), loss_names()
    return {names[0]: default[names[0]], **{n: float(f'{default[n] * m:.6g}') for n, m in zip(names[1:], multipliers)}}


def setting_label(setting: tuple, names: list[str]) -> str:
    return (
        FIXED
        if all(m == 1.0 for m in setting)
        else 'Fixed ' + ', '.join(f'{n} x{m:g}' for n, m in zip(names, setting) if m != 1.0)
    )


def photos(p: dict, photo_set: str) -> list[str]:
    return list(p.get('photos', {}).get(photo_set, PHOTO_SETS[photo_set]))


def options(
    p: dict,
    name: str,
    seed: int,
    weights: dict,
    policy: dict,
    experts: dict,
    policy_seed: int | None = None,
    stage_iters: int | None = None,
    snapshots: int | None = None,
) -> dict:
    """The demo's option file with this run's name, seed, size, weights, policy and experts."""
    opt = demo_options()
    opt.update(name=name, manual_seed=seed, num_gpu=0)
    opt['path']['pretrain_network_g'] = str(START)
    opt['train']['total_iter'] = p['iters']
    for loss, weight in weights.items():
        opt['train']['losses'][loss]['loss_weight'] = weight
    agent = opt['agent']
    agent.update(stage_iters=stage_iters or p['stage_iters'], policy=policy, experts=experts, score_network='ema')
    if policy_seed is not None:
        agent['policy_seed'] = policy_seed
    n_snap = p.get('snapshots', agent.get('snapshots', 1)) if snapshots is None else snapshots
    agent.update(snapshots=n_snap)
    if n_snap == 1:
        agent.pop('snapshot_every', None)
    agent['dataset']['crops_per_side'] = p['agent_crops_per_side']
    agent['num_images'] = len(agent['dataset']['images']) * p['agent_crops_per_side'] ** 2
    if 'crop' in p:
        agent['dataset']['crop_size'] = p['crop']
    if probes(policy) and 'probe_iters' in p:
        policy['probe_iters'] = p['probe_iters']
    opt['logger'].update(print_freq=max(1, p['iters'] // 10), save_checkpoint_freq=10**7, use_tb_logger=False)
    return opt


def objective_experts(objective: str) -> dict:
    return {n: {**EXPERTS[n], 'weight': w} for n, w in OBJECTIVES[objective].experts.items()}


def probes(policy: dict) -> bool:
    """The arm's policy trains candidates at each boundary (its class says so: `needs_probes`)."""
    from agent.policies import find_policy

    return bool(getattr(find_policy(policy['type']), 'needs_probes', False))


def arm_unavailable(key: str) -> str | None:
    """Why a policy arm cannot run here (its policy is not registered, or rejects the arm's options);
    None when it can. Checked without loading a model or connecting to anything."""
    from agent import ExpertInfo
    from agent.policies import check_policy, find_policy
    from lossagent_errors import OptionError

    policy = ARMS[key].policy
    if find_policy(policy['type']) is None:
        return f"policy '{policy['type']}' is not registered (agent/policies/{policy['type']}_policy.py is missing)"
    default = default_weights()
    try:
        check_policy(copy.deepcopy(policy), list(default), list(default.values()), [ExpertInfo('NIQE', True)])
    except OptionError as err:
        return str(err)
    return None


def policy_arms(p: dict) -> tuple[list[str], dict[str, str]]:
    """(the profile's arms that can run, {arm: why not} for the others)."""
    run, skipped = [], {}
    for key in p['arms']:
        why = arm_unavailable(key)
        if why is None:
            run.append(key)
        else:
            skipped[key] = why
    return run, skipped


def plan(p: dict, arms: list[str] | None = None) -> list[Run]:
    """Every train.py run of the profile (PBT's populations are planned by pbt.py: `pbt_runs`)."""
    names = loss_names()
    free = names[1:]
    default = default_weights()
    all_experts = {n: dict(e) for n, e in EXPERTS.items()}
    arms = policy_arms(p)[0] if arms is None else arms
    runs = []
    cut = p.get('cut_seeds', {})

    def kept(key: str, seed: int) -> bool:  # a cut arm keeps its first N secondary seeds
        return key not in cut or seed in p['secondary_seeds'][: cut[key]]

    for seed in sorted(set(p['seeds']) | set(p['secondary_seeds'])):
        primary, secondary = seed in p['seeds'], seed in p['secondary_seeds']
        for setting in itertools.product(p['multipliers'], repeat=len(free)):
            is_default = all(m == 1.0 for m in setting)
            if not ((secondary and (is_default or kept('grid', seed))) or (is_default and primary)):
                continue
            tag = 'default' if is_default else '_'.join(f'{n}x{m:g}' for n, m in zip(free, setting))
            name = f'{p["prefix"]}_s{seed}_fixed_{tag}'
            # only the default's stage scores are read; the other fixed settings are judged on the
            # held-out photos alone, so they skip the boundaries (training is the same)
            quiet = {} if is_default else dict(stage_iters=p['iters'], snapshots=1)
            runs.append(
                Run(
                    name,
                    setting_label(setting, free),
                    seed,
                    'sweep',
                    options(p, name, seed, scaled(setting), {'type': 'fixed'}, all_experts, **quiet),
                    setting=setting,
                    cost=1.0 if is_default else QUIET_COST,
                )
            )
        for key in arms:
            arm = ARMS[key]
            if not (primary if arm.seeds == 'primary' else secondary and kept(key, seed)):
                continue
            name = f'{p["prefix"]}_s{seed}_{key}'
            policy = copy.deepcopy(arm.policy)
            if policy['type'] in ('llm', 'hybrid'):  # the LLM's prompt names the objective
                policy['extra_needs'] = [
                    f'The goal is to improve {OBJECTIVES[POLICY_OBJECTIVE].label} on the validation images.'
                ]
            runs.append(
                Run(
                    name,
                    f'{arm.label} ({OBJECTIVES[POLICY_OBJECTIVE].label})',
                    seed,
                    'policy',
                    options(
                        p,
                        name,
                        seed,
                        default,
                        policy,
                        objective_experts(POLICY_OBJECTIVE),
                        policy_seed=1000 * arm.number + seed,
                    ),
                    objective=POLICY_OBJECTIVE,
                    policy=key,
                    cost=arm.cost,
                )
            )
        if secondary and kept('schedules', seed):
            for key in p['schedules']:
                before, after = SCHEDULES[key]
                half = p['iters'] // 2
                name = f'{p["prefix"]}_s{seed}_schedule_{key}'
                policy = {'type': 'schedule', 'switch_at': half, 'then': {free[-1]: scaled((1.0, after))[free[-1]]}}
                runs.append(
                    Run(
                        name,
                        f'Schedule {free[-1]} x{before:g} -> x{after:g}',
                        seed,
                        'schedule',
                        options(
                            p, name, seed, scaled((1.0, before)), policy, all_experts, stage_iters=half, snapshots=1
                        ),
                        policy=key,
                        cost=SCHEDULE_COST,
                    )
                )
    return runs


def pbt_runs(p: dict) -> list[Run]:
    """One Run per PBT seed: its deployed network (the best member's at the end) is what is evaluated."""
    out = []
    for seed in p.get('pbt_seeds', []):
        name = f'{p["prefix"]}_s{seed}_pbt'
        opt = options(p, name, seed, default_weights(), {'type': 'fixed'}, objective_experts(POLICY_OBJECTIVE))
        out.append(Run(name, PBT_LABEL, seed, 'pbt', opt, cost=PBT_COST, extra={'pbt_seed': 1000 * PBT_ARM + seed}))
    return out


def eval_options(p: dict, seed: int, runs: list[Run], results_root: Path) -> dict:
    """test.py on one seed's networks: the deployed (EMA) generator of every run, and the start, on
    every photo of the profile's photo sets (one dataset per photo; the report groups them by set)."""
    demo = demo_options()
    methods = OrderedDict([(START_LABEL, {'pretrain_network_g': str(START)})])
    for run in runs:
        if run.seed == seed:
            methods[run.name] = {'pretrain_network_g': str(run.checkpoint), 'param_key_g': 'params_ema'}
    datasets = OrderedDict(
        (
            photo,
            {
                'type': 'SkimagePhotoDataset',
                'images': [photo],
                'crop_size': p.get('crop', 192),
                'crops_per_side': p['eval_crops_per_side'],
                'min_std': 0.05,
            },
        )
        for photo_set in p['photo_sets']
        for photo in photos(p, photo_set)
    )
    scale = demo['scale']
    return json.loads(
        json.dumps(
            OrderedDict(
                name=f'{p["prefix"]}_eval_s{seed}',
                title=f'Held-out photos ({", ".join(p["photo_sets"])}), seed {seed}',
                scale=scale,
                num_gpu=0,
                manual_seed=0,
                path={'results_root': str(results_root)},
                network_g=demo['network_g'],
                methods=methods,
                datasets=datasets,
                metrics=OrderedDict(
                    niqe={'label': 'NIQE'},
                    psnr={'label': 'PSNR', 'crop_border': scale},
                    ssim={'label': 'SSIM', 'crop_border': scale},
                ),
                val={'gt_row': True, 'save_images': False},
            )
        )
    )


def estimate(p: dict, runs: list[Run], jobs: int = 2) -> dict:
    """The plan's wall time in minutes on `jobs` free cores (the cost model above)."""
    training = sum(r.cost for r in runs) * RUN_CPU_S * p['iters'] / 300 / max(1, jobs)
    networks = len(runs) + len({r.seed for r in runs})  # every run, and the start once per seed
    images = sum(len(photos(p, s)) for s in p['photo_sets']) * p['eval_crops_per_side'] ** 2
    evaluation = networks * images * EVAL_CPU_S_PER_IMAGE / max(1, jobs)
    return {
        'runs': len(runs),
        'run_equivalents': round(sum(r.cost for r in runs), 1),
        'training_min': round(training / 60, 1),
        'evaluation_min': round(evaluation / 60, 1),
        'total_min': round((training + evaluation) / 60, 1),
    }
