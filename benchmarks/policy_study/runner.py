"""Running the study's trainings (train.py) and evaluations (test.py) as processes.

Single-threaded processes, `jobs` at a time: results do not depend on the machine's load. A run
whose options and code are unchanged since it finished is reused instead of trained again.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from . import PY, ROOT

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
    folders = ('agent', 'lossagent_models', 'lossagent_hook', 'lossagent_runtime', 'lossagent_data',
               'lossagent_losses', 'lossagent_arch')
    files = sorted([ROOT / name for name in ('train.py', 'lossagent_compat.py', 'lossagent_errors.py')]
                   + [f for d in folders for f in (ROOT / d).rglob('*') if f.is_file() and f.suffix in ('.py', '.txt')])
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]

def stamp(opt: dict) -> dict:
    return {'source': source_hash(), 'options': opt}

def finished(run_root: Path, opt: dict, reuse_any_code: bool = False) -> bool:
    """A previous run with the very same options and code (options only with `reuse_any_code`,
    the CLI's --reuse) that reached its final checkpoint."""
    saved = run_root / 'study_options.yml'
    if not ((run_root / 'models' / 'net_g_latest.pth').exists() and saved.exists()):
        return False
    saved = yaml.safe_load(saved.read_text())
    return saved['options'] == opt if reuse_any_code else saved == stamp(opt)

def start_training(name: str, opt: dict, out: Path, threads: int, reuse_any_code: bool = False):
    """Write the option file and launch train.py; None when an identical finished run exists."""
    opt_path = out / 'options' / f'{name}.yml'
    opt_path.parent.mkdir(parents=True, exist_ok=True)
    opt_path.write_text(yaml.safe_dump(opt, sort_keys=False))
    run_root = ROOT / 'experiments' / name
    if finished(run_root, opt, reuse_any_code):
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

def run_all(runs: list, out: Path, jobs: int, threads: int, t0: float, reuse_any_code: bool = False) -> None:
    pending, active, done, took = list(runs), [], 0, []
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            proc = start_training(run.name, run.opt, out, threads, reuse_any_code)
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
            # reused runs take no time
            left = len(active) + sum(1 for r in pending if not finished(r.root, r.opt, reuse_any_code))
            elapsed = time.time() - t0
            print(f'  {run.name}: {took[-1]:.0f}s | {done}/{len(runs)} runs, '
                  f'{elapsed / 60:.1f} min so far, ~{left * per_run / jobs / 60:.0f} min of training left',
                  flush=True)

def evaluate(eval_opt: dict, out: Path, threads: int) -> Path:
    """test.py on one seed's checkpoints; the path of its CSV table."""
    path = out / 'options' / f"{eval_opt['name']}.yml"
    path.write_text(yaml.safe_dump(eval_opt, sort_keys=False, allow_unicode=True))
    with open(out / 'logs' / f"{eval_opt['name']}.log", 'w') as log:
        rc = subprocess.run([PY, str(ROOT / 'test.py'), '-opt', str(path)], cwd=ROOT, env=env_for(threads),
                            stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"study: test.py failed for {eval_opt['name']}; log {out}/logs/{eval_opt['name']}.log")
    return out / 'results' / eval_opt['name'] / f"{eval_opt['name']}.csv"


def versions() -> dict:
    import importlib.metadata as md
    out = {'python': platform.python_version()}
    for pkg in ('torch', 'basicsr', 'pyiqa', 'scikit-image'):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = 'n/a'
    return out
