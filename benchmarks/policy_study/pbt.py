"""Population-based training (Ray Tune's PopulationBasedTraining) on the study's task: what a user
would pick instead of an adaptive policy. Optional: `pip install -e ".[pbt]"`.

A population of `population` members trains the task; the hyperparameters are the non-anchor loss
weights (SSIM, GAN). Member 0 starts at the default weights (the matched start), the others at
seeded log-uniform draws within the policies' trust region (x0.1 .. x10 of the defaults). Every
stage (`agent.stage_iters` iterations) is one train.py process resumed from the member's training
state (the project's own: networks, optimizers, RNG, data position, the agent's weights), with
the member's current weights written into that state. After a stage each member reports the EMA
generator's NIQE on the agent's validation photos (the score every policy sees) and a checkpoint;
PBT then lets the worst quarter copy the best quarter's checkpoint and explore its weights
(x0.8 / x1.2, or a fresh draw), clipped back into the trust region. The deployed network is the
best member's EMA generator at the end. Every iteration any member trained counts as compute.

Ray's traps, avoided here: perturbations leave the declared range unless clipped (`clip`);
`time_attr` defaults to wall-clock seconds (here: training iterations, `iters`);
`CheckpointConfig(num_to_keep <= 2)` with `synch=True` can hang the population (here: 3, enough
for the latest of every member, ~25 MB each);
Ray changes into each trial's folder (every path here is absolute; RAY_CHDIR_TO_TRIAL_DIR=0 too).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import yaml

from lossagent_models.checkpoint_files import file_digest, save_verified, write_manifest

from . import ROOT
from .plan import default_weights, loss_names, options
from .runner import finished, run_script, source_hash, stamp

POPULATION = 4
BOUNDS = (0.1, 10.0)  # the policies' trust region: x0.1 .. x10 of each default weight (ln 10 = 2.3)
PBT_VERSION = '2.60.0'  # setup.py extras_require['pbt']


def ray_missing() -> str | None:
    """Why PBT cannot run here (None when Ray Tune imports)."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError as err:
        return f'Ray Tune is not installed ({err}); pip install -e ".[pbt]" adds it'
    return None


def bounds() -> dict[str, tuple[float, float]]:
    default, names = default_weights(), loss_names()
    return {n: (default[n] * BOUNDS[0], default[n] * BOUNDS[1]) for n in names[1:]}


def clip(config: dict) -> dict:
    """PBT's explore step leaves the declared range (x1.2 of the top value): back into the bounds."""
    for name, (lo, hi) in bounds().items():
        config[name] = float(f'{min(hi, max(lo, float(config[name]))):.6g}')
    return config


def initial_weights(population: int, seed: int) -> list[dict[str, float]]:
    """Member 0 at the defaults; the others log-uniform within the bounds (seeded)."""
    rng, default = random.Random(seed), default_weights()
    out = [{n: default[n] for n in bounds()}]
    for _ in range(population - 1):
        out.append(
            {n: float(f'{math.exp(rng.uniform(math.log(lo), math.log(hi))):.6g}') for n, (lo, hi) in bounds().items()}
        )
    return out


def _train_stage(opt: dict, options_path: Path, log_path: Path, threads: int) -> float:
    """train.py on `opt`; its CPU seconds. Raises on a non-zero exit."""
    options_path.write_text(yaml.safe_dump(opt, sort_keys=False))
    rc, cpu_s = run_script('train.py', options_path, log_path, threads)
    if rc != 0:
        raise RuntimeError(f'pbt: train.py failed on {options_path} (log {log_path})')
    return cpu_s


def _validation_niqe(member_root: Path, iteration: int) -> float:
    """The member's agent-validation NIQE (EMA generator) at the stage boundary `iteration`."""
    from agent.decision_log import current_records

    records = [r for r in current_records(member_root / 'agent' / 'decisions.jsonl') if r.iteration == iteration]
    value = records[-1].mean_scores().get('NIQE') if records else None
    return float(value) if value is not None and math.isfinite(value) else 1e6  # a broken member ranks last


def member(config: dict) -> None:
    """One Ray Tune trial: train stage by stage, report after each with a checkpoint."""
    import torch
    from ray import tune
    from ray.tune import Checkpoint

    job = config['job']
    p, base, work = job['profile'], job['options'], Path(job['work'])
    root = ROOT / 'experiments' / f'{job["name"]}_{tune.get_context().get_trial_id()}'
    weights = {**default_weights(), **{n: config[n] for n in bounds()}}
    iteration, checkpoint = 0, tune.get_checkpoint()
    if checkpoint is not None:  # our own or, after an exploit, the donor's
        with checkpoint.as_directory() as d:
            iteration = json.loads((Path(d) / 'meta.json').read_text())['iteration']
            for sub in ('models', 'training_states'):
                (root / sub).mkdir(parents=True, exist_ok=True)
            for name in ('net_g', 'net_d'):
                shutil.copy(Path(d) / f'{name}_{iteration}.pth', root / 'models' / f'{name}_{iteration}.pth')
            state = torch.load(Path(d) / f'{iteration}.state', weights_only=True)
        state['agent']['weights'] = dict(weights)  # the explored weights apply from here on
        state_path = root / 'training_states' / f'{iteration}.state'
        # a new manifest for the set as it now is (the member's own one describes its earlier files,
        # and train.py refuses to resume from files that differ from it)
        entries = {str(state_path): save_verified(state, str(state_path))}
        for name in ('net_g', 'net_d'):
            size, sha256 = file_digest(str(path := root / 'models' / f'{name}_{iteration}.pth'))
            entries[str(path)] = {'size': size, 'sha256': sha256}
        write_manifest(str(state_path), entries, iteration)
    while iteration < p['iters']:
        target = iteration + p['stage_iters']
        opt = json.loads(json.dumps(base))
        opt['name'] = root.name
        opt['train']['total_iter'] = target
        for loss, weight in weights.items():
            opt['train']['losses'][loss]['loss_weight'] = weight
        opt['logger']['save_checkpoint_freq'] = p['stage_iters']
        if iteration:
            opt['path']['resume_state'] = str(root / 'training_states' / f'{iteration}.state')
        started = time.time()
        stem = f'{root.name}_{target}'
        cpu_s = _train_stage(opt, work / 'options' / f'{stem}.yml', work / 'logs' / f'{stem}.log', job['threads'])
        niqe = _validation_niqe(root, target)
        with open(work / 'stages.jsonl', 'a') as f:
            f.write(
                json.dumps(
                    {
                        'member': root.name,
                        'from': iteration,
                        'to': target,
                        'weights': weights,
                        'niqe': niqe,
                        'cpu_s': round(cpu_s, 1),
                        'wall_s': round(time.time() - started, 1),
                    }
                )
                + '\n'
            )
        iteration = target
        with tempfile.TemporaryDirectory() as d:
            for name in ('net_g', 'net_d'):
                shutil.copy(root / 'models' / f'{name}_{iteration}.pth', Path(d))
            shutil.copy(root / 'training_states' / f'{iteration}.state', Path(d))
            (Path(d) / 'meta.json').write_text(
                json.dumps({'iteration': iteration, 'weights': weights, 'member': root.name})
            )
            tune.report({'niqe': niqe, 'iters': iteration}, checkpoint=Checkpoint.from_directory(d))


def run_pbt(
    run, p: dict, out: Path, jobs: int = 2, threads: int = 1, reuse_any_code: bool = False, population: int = POPULATION
) -> dict[str, dict]:
    """Train one PBT population for `run` (plan.pbt_runs); the best member's final network becomes
    experiments/<run.name>/models/net_g_latest.pth. {run.name: {'wall_s', 'cpu_s'}}."""
    source = source_hash()
    earlier = finished(run.name, run.opt, source, reuse_any_code)
    if earlier is not None:
        print(f'  {run.name}: finished earlier with the same options and code: reused', flush=True)
        return {run.name: earlier}
    os.environ['RAY_CHDIR_TO_TRIAL_DIR'] = '0'
    # Ray's workers inherit the driver's environment: they import this module (policy_study) and the project
    paths = [str(ROOT), str(ROOT / 'benchmarks'), os.environ.get('PYTHONPATH', '')]
    os.environ['PYTHONPATH'] = os.pathsep.join(x for x in paths if x)
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    work = (out / 'pbt' / run.name).resolve()
    shutil.rmtree(work, ignore_errors=True)
    for sub in ('options', 'logs'):
        (work / sub).mkdir(parents=True, exist_ok=True)
    for old in ROOT.glob(f'experiments/{run.name}_*'):
        shutil.rmtree(old, ignore_errors=True)
    seed = run.extra['pbt_seed']
    starts = initial_weights(population, seed)
    names = list(bounds())
    job = {
        'profile': {'iters': p['iters'], 'stage_iters': p['stage_iters']},
        'options': run.opt,
        'name': run.name,
        'work': str(work),
        'threads': threads,
    }
    space = {'job': job, 'member': tune.grid_search(list(range(population)))}
    for n in names:
        space[n] = tune.sample_from(lambda spec, n=n: starts[spec.config['member']][n])
    scheduler = PopulationBasedTraining(
        time_attr='iters',
        perturbation_interval=p['stage_iters'],
        burn_in_period=0,
        hyperparam_mutations={n: tune.loguniform(*bounds()[n]) for n in names},
        custom_explore_fn=clip,
        quantile_fraction=0.25,
        resample_probability=0.25,
        synch=True,
    )
    random.seed(seed)  # PBT's explore draws from Python's and numpy's global generators
    import numpy as np

    np.random.seed(seed % 2**32)
    # each trial is a process that starts train.py; reusing actors would save nothing here
    warnings.filterwarnings('ignore', message='Consider boosting PBT performance')
    started = time.time()
    ray.init(
        num_cpus=jobs, include_dashboard=False, log_to_driver=False, logging_level='ERROR', ignore_reinit_error=True
    )
    try:
        tuner = tune.Tuner(
            tune.with_resources(member, {'cpu': 1}),
            param_space=space,
            tune_config=tune.TuneConfig(
                scheduler=scheduler, metric='niqe', mode='min', num_samples=1, reuse_actors=False
            ),
            run_config=tune.RunConfig(
                name=run.name,
                storage_path=str(work / 'ray'),
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=3),
                failure_config=tune.FailureConfig(max_failures=1),
            ),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    stages = [json.loads(line) for line in (work / 'stages.jsonl').read_text().splitlines()]
    finals = [s for s in stages if s['to'] == p['iters']]
    if len(finals) < population or results.num_errors:
        raise SystemExit(f'study: PBT {run.name}: {results.num_errors} members failed; logs in {work}/logs')
    best = min(finals, key=lambda s: s['niqe'])
    (run.root / 'models').mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / 'experiments' / best['member'] / 'models' / f'net_g_{p["iters"]}.pth', run.checkpoint)
    summary = {
        'population': population,
        'seed': seed,
        'starts': starts,
        'best_member': best['member'],
        'best_weights': best['weights'],
        'best_validation_niqe': best['niqe'],
        'training_iters': sum(s['to'] - s['from'] for s in stages),
        'stages': stages,
    }
    (run.root / 'pbt.json').write_text(json.dumps(summary, indent=1))
    took = {'wall_s': round(time.time() - started, 1), 'cpu_s': round(sum(s['cpu_s'] for s in stages), 1)}
    stamp(run.name, run.opt, source, took['wall_s'], took['cpu_s'])
    print(
        f'  {run.name}: {took["wall_s"]:.0f}s ({took["cpu_s"]:.0f} CPU s), {summary["training_iters"]} iterations, '
        f'best member {best["member"]} at {best["weights"]}',
        flush=True,
    )
    return {run.name: took}


def smoke_profile() -> dict:
    """A tiny population's task: 6 iterations, a stage every 2 (two perturbations), small crops."""
    return {'iters': 6, 'stage_iters': 2, 'agent_crops_per_side': 1, 'snapshots': 1, 'crop': 96}


def smoke_run(prefix: str):
    from .plan import Run

    p = smoke_profile()
    opt = options(p, prefix, 0, default_weights(), {'type': 'fixed'}, {'NIQE': {'metric': 'niqe', 'weight': 1.0}})
    return Run(prefix, 'PBT smoke', 0, 'pbt', opt, extra={'pbt_seed': 9000}), p
