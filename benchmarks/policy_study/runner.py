"""Running the study's trainings (train.py) and evaluations (test.py) as processes.

Single-threaded processes, `jobs` at a time: results do not depend on the machine's load. A run
whose options and code are unchanged since it finished is reused instead of trained again (its
measured wall time is kept with it). Each run's CPU seconds are kept beside its wall time: on a
shared machine they, not the wall time, say what a run costs.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from . import PY, ROOT

CODE = (
    'agent',
    'lossagent_models',
    'lossagent_hook',
    'lossagent_runtime',
    'lossagent_data',
    'lossagent_losses',
    'lossagent_arch',
    'lossagent_iqa',
    'lossagent_options',
)


def env_for(threads: int) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(x for x in (str(ROOT), env.get('PYTHONPATH')) if x)
    env['HF_HUB_OFFLINE'] = '1'
    env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(threads)
    return env


def source_hash() -> str:
    """Hash of the code a run depends on, so a changed policy never reuses an old run."""
    h = hashlib.sha256()
    files = sorted(
        [ROOT / name for name in ('train.py', 'lossagent_compat.py', 'lossagent_errors.py')]
        + [f for d in CODE for f in (ROOT / d).rglob('*') if f.is_file() and f.suffix in ('.py', '.txt')]
    )
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _stamp_path(name: str) -> Path:
    return ROOT / 'experiments' / name / 'study_options.yml'


def finished(name: str, opt: dict, source: str, reuse_any_code: bool = False):
    """{'wall_s', 'cpu_s'} of a previous run with the very same options and code (options only with
    `reuse_any_code`, the CLI's --reuse) that reached its final checkpoint; None otherwise."""
    stamp = _stamp_path(name)
    if not ((ROOT / 'experiments' / name / 'models' / 'net_g_latest.pth').exists() and stamp.exists()):
        return None
    saved = yaml.safe_load(stamp.read_text())
    same = saved['options'] == opt and (reuse_any_code or saved['source'] == source)
    return {'wall_s': float(saved.get('wall_s', 0.0)), 'cpu_s': saved.get('cpu_s')} if same else None


def stamp(name: str, opt: dict, source: str, wall_s: float, cpu_s) -> None:
    """Mark a run finished with these options and code (what `finished` checks)."""
    _stamp_path(name).write_text(
        yaml.safe_dump({'source': source, 'wall_s': wall_s, 'cpu_s': cpu_s, 'options': opt}, sort_keys=False)
    )


def _launch(name: str, opt: dict, out: Path, threads: int) -> subprocess.Popen:
    opt_path = out / 'options' / f'{name}.yml'
    opt_path.write_text(yaml.safe_dump(opt, sort_keys=False))
    shutil.rmtree(ROOT / 'experiments' / name, ignore_errors=True)
    log = open(out / 'logs' / f'{name}.log', 'w')  # noqa: SIM115 -- the run's child writes it until it ends
    proc = subprocess.Popen(
        [PY, str(ROOT / 'train.py'), '-opt', str(opt_path)],
        cwd=ROOT,
        env=env_for(threads),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.study_log = log
    return proc


def _exited(proc: subprocess.Popen):
    """None while running; else the child's CPU seconds (user + system), its exit code set."""
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid == 0:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return round(usage.ru_utime + usage.ru_stime, 1)


def run_all(runs: list, out: Path, jobs: int, threads: int, reuse_any_code: bool = False) -> dict[str, dict]:
    """Train every run (`jobs` at a time); {name: {'wall_s', 'cpu_s'}} (a reused run: its earlier times)."""
    source = source_hash()
    took, pending, active = {}, [], []
    for run in runs:
        earlier = finished(run.name, run.opt, source, reuse_any_code)
        if earlier is None:
            pending.append(run)
        else:
            took[run.name] = earlier
    if len(took):
        print(f'  {len(took)} runs finished earlier with the same options and code: reused', flush=True)
    t0, total, failures = time.time(), len(pending), {}
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            active.append((run, _launch(run.name, run.opt, out, threads), time.time()))
        time.sleep(0.5)
        for item in list(active):
            run, proc, started = item
            cpu_s = _exited(proc)
            if cpu_s is None:
                continue
            proc.study_log.close()
            active.remove(item)
            if proc.returncode != 0:  # protocol.md: rerun once; twice failed is reported missing
                log = f'{out}/logs/{run.name}.log'
                failures[run.name] = failures.get(run.name, 0) + 1
                if failures[run.name] == 1:
                    print(f'  {run.name}: train.py exit {proc.returncode} (log {log}); rerunning it once', flush=True)
                    pending.append(run)
                else:
                    print(f'  {run.name}: failed twice (log {log}); reported missing', flush=True)
                    total -= 1
                continue
            took[run.name] = {'wall_s': round(time.time() - started, 1), 'cpu_s': cpu_s}
            stamp(run.name, run.opt, source, took[run.name]['wall_s'], cpu_s)
            done = total - len(pending) - len(active)
            per_run = (time.time() - t0) / max(1, done)
            print(
                f'  {run.name}: {took[run.name]["wall_s"]:.0f}s ({cpu_s:.0f} CPU s) | {done}/{total} trained, '
                f'{(time.time() - t0) / 60:.1f} min so far, ~{per_run * (total - done) / 60:.0f} min left',
                flush=True,
            )
    return took


def run_script(script: str, options_path: Path, log_path: Path, threads: int) -> tuple[int, float]:
    """`python <script> -opt <options_path>` to its end, output to `log_path`: (exit code, CPU seconds)."""
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            [PY, str(ROOT / script), '-opt', str(options_path)],
            cwd=ROOT,
            env=env_for(threads),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def evaluate(eval_opt: dict, out: Path, threads: int) -> Path:
    """test.py on one seed's checkpoints; the path of its CSV table."""
    path = out / 'options' / f'{eval_opt["name"]}.yml'
    path.write_text(yaml.safe_dump(eval_opt, sort_keys=False, allow_unicode=True))
    started = time.time()
    rc, cpu_s = run_script('test.py', path, out / 'logs' / f'{eval_opt["name"]}.log', threads)
    print(
        f'  {eval_opt["name"]}: {time.time() - started:.0f}s ({cpu_s:.0f} CPU s) for '
        f'{len(eval_opt["methods"])} networks on {len(eval_opt["datasets"])} photos',
        flush=True,
    )
    if rc != 0:
        raise SystemExit(f'study: test.py failed for {eval_opt["name"]}; log {out}/logs/{eval_opt["name"]}.log')
    return out / 'results' / eval_opt['name'] / f'{eval_opt["name"]}.csv'


def evaluate_all(eval_opts: list[dict], out: Path, jobs: int, threads: int) -> list[Path]:
    """test.py for every seed, `jobs` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda o: evaluate(o, out, threads), eval_opts))


def versions() -> dict:
    import importlib.metadata as md

    out = {'python': platform.python_version()}
    for pkg in ('torch', 'basicsr', 'pyiqa', 'scikit-image'):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = 'n/a'
    return out
