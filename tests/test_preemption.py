"""SIGTERM/SIGUSR1 mid-stage: the run saves the iteration it reached, exits 75 with one line, and
`--auto_resume` ends exactly where an uninterrupted run ends (one process, and two gloo ranks)."""

import json
import os
import signal
import subprocess
import sys
import time

from test_distributed import free_port
from test_resume_kill import trajectory
from training import ROOT, tiny_options

EXIT_PREEMPTED = 75


def logged_iteration(run) -> int:
    """The newest iteration in the run's log file (0 before the first)."""
    logs = sorted(run.root.glob('train_*.log'))
    if not logs:
        return 0
    marks = [
        line.split('iter:')[1].split(',')[0]
        for line in logs[-1].read_text().splitlines()
        if 'iter:' in line and 'lr:' in line
    ]
    return int(marks[-1].replace(',', '')) if marks else 0


def wait_for_iteration(run, procs, at_iter: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while logged_iteration(run) < at_iter:
        assert time.time() < deadline, 'training did not reach the iteration in time'
        assert all(p.poll() is None for p in procs), 'the run ended before the signal'
        time.sleep(0.02)


def state_files(run) -> list[str]:
    return sorted(p.name for p in (run.root / 'training_states').glob('*.state'))


def test_sigterm_mid_stage_saves_the_iteration_and_resumes_exactly(make_run):
    opt = tiny_options('preempt', stage_iters=4, total_iter=12, policy={'type': 'adaptive'})
    reference = make_run(opt)
    reference.train()
    run = make_run(opt)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / 'train.py'), '-opt', str(run.yml)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_iteration(run, [proc], 6)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)  # a second signal (SLURM's early warning) while it stops and saves
        _, stderr = proc.communicate(timeout=60)
        took = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_PREEMPTED, stderr[-3000:]
    assert took < 60
    states = state_files(run)
    assert len(states) == 1, states  # no periodic checkpoint: the state is the one written on the signal
    stopped_at = int(states[0][: -len('.state')])
    assert 6 <= stopped_at < 12
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f'train.py: stopped by SIGTERM after iteration {stopped_at}: training state ')
    assert f'training_states/{stopped_at}.state; continue with --auto_resume (exit status 75)' in last
    assert (run.root / 'training_states' / f'{stopped_at}.state.json').exists()  # the manifest: whole
    print(f'SIGTERM to exit: {took:.2f} s (stopped after iteration {stopped_at})')

    run.train('--auto_resume')
    assert any(
        f'Resuming training from epoch: 0, iter: {stopped_at}.' in p.read_text() for p in run.root.glob('train_*.log')
    )
    assert trajectory(run.records()) == trajectory(reference.records())
    assert [r['stage'] for r in run.records()] == [0, 1, 2, 3]


def test_preempt_signals_option_is_checked(make_run):
    opt = tiny_options('preempt_opt')
    opt['logger']['preempt_signals'] = ['SIGTERM', 'SIGKILL']
    run = make_run(opt)
    proc = run.train(check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "train.py: error: logger.preempt_signals: 'SIGKILL' is not a signal that can be caught; "
        "expected names such as ['SIGTERM', 'SIGUSR1']"
    ]
    assert not run.root.exists()


def applied(run, rank):
    path = run.root / 'agent' / f'applied_rank{rank}.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()]


def two_ranks(run, port: int, *args: str) -> list[subprocess.Popen]:
    """Two train.py processes as torchrun would start them (gloo on CPU)."""
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            'OMP_NUM_THREADS': '1',
            'RANK': str(rank),
            'LOCAL_RANK': str(rank),
            'WORLD_SIZE': '2',
            'MASTER_ADDR': '127.0.0.1',
            'MASTER_PORT': str(port),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / 'train.py'), '-opt', str(run.yml), '--launcher', 'pytorch', *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def finish(procs, timeout: float = 400) -> list[str]:
    """Each process' stderr once all have exited (killed after `timeout`)."""
    errs = []
    try:
        for proc in procs:
            errs.append(proc.communicate(timeout=timeout)[1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return errs


def train_two_ranks(run, *args: str) -> None:
    procs = two_ranks(run, free_port(), *args)
    errs = finish(procs)
    assert [p.returncode for p in procs] == [0, 0], errs[0][-3000:] + errs[1][-3000:]


def test_sigterm_to_one_of_two_gloo_ranks_stops_both_at_one_iteration(make_run):
    signalled_rank = 1  # not the one that saves
    opt = tiny_options('preempt_dist', stage_iters=4, total_iter=12, policy={'type': 'random'})
    reference = make_run(opt)
    train_two_ranks(reference)
    run = make_run(opt)
    procs = two_ranks(run, free_port())
    try:
        wait_for_iteration(run, procs, 6)
        sent = time.perf_counter()
        procs[signalled_rank].send_signal(signal.SIGTERM)  # the other rank learns it through the all-reduce
        errs = finish(procs, timeout=120)
        took = time.perf_counter() - sent
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [p.returncode for p in procs] == [EXIT_PREEMPTED] * 2, errs
    states = state_files(run)
    assert len(states) == 1, states
    stopped_at = int(states[0][: -len('.state')])
    for err in errs:  # both ranks stopped after the same iteration and name the same state
        assert f'after iteration {stopped_at}: training state ' in err.strip().splitlines()[-1]
    print(f'two ranks: SIGTERM to exit {took:.2f} s (stopped after iteration {stopped_at})')

    train_two_ranks(run, '--auto_resume')
    assert trajectory(run.records()) == trajectory(reference.records())
    assert applied(run, 0) == applied(run, 1) == applied(reference, 0)
