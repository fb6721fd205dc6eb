"""A run killed with SIGKILL in the middle of a stage and resumed ends where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time

import pytest

from training import ROOT, tiny_options


def trajectory(records):
    return [(r['stage'], r['iteration'], r['weights_before'], r['weights_after'], r['mean_scores']) for r in records]


def kill_mid_stage(run, after_state: int, at_iter: int, timeout: float = 240):
    """Start train.py, SIGKILL it once `after_state`.state exists and iteration `at_iter` was logged."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / 'train.py'), '-opt', str(run.yml)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + timeout
    marker = f'iter: {at_iter:>7,d},'
    try:
        while time.time() < deadline and proc.poll() is None:
            state = run.root / 'training_states' / f'{after_state}.state'
            logs = list(run.root.glob('train_*.log'))
            if state.exists() and logs and marker in logs[0].read_text():
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'


@pytest.mark.parametrize('policy', ['fixed', 'adaptive', 'adaptive_paired', 'llm', 'hybrid', 'lookahead'])
def test_killed_and_resumed_run_matches_an_uninterrupted_one(make_run, policy):
    from openai_stub_server import OpenAIStubServer

    with OpenAIStubServer() as server:  # answers depend only on the prompt: deterministic
        policy_opt = {'type': 'adaptive', 'strategy': 'paired'} if policy == 'adaptive_paired' else {'type': policy}
        if policy == 'lookahead':  # the checkpoint at 6 falls inside the window 5..7 after the boundary at 4
            policy_opt.update(probe_iters=3, candidates=3)
        if policy in ('llm', 'hybrid'):  # hybrid: the paired search, its proposals reviewed by the server
            policy_opt.update(base_url=server.base_url, model='stub')
        opt = tiny_options(f'kill_{policy}', stage_iters=4, total_iter=12, policy=policy_opt)
        opt['logger']['save_checkpoint_freq'] = 6
        opt['train']['total_iter'] = 12

        reference = make_run(opt)
        reference.train()
        interrupted = make_run(opt)
        kill_mid_stage(interrupted, after_state=6, at_iter=7)
        interrupted.train('--auto_resume')

    expected, got = reference.records(), interrupted.records()
    assert [r['stage'] for r in got] == [0, 1, 2, 3]
    assert trajectory(got) == trajectory(expected)
    if policy != 'fixed':
        assert any(r['weights_after'] != r['weights_before'] for r in got[1:])
    if policy == 'lookahead':
        assert [p['mean_scores'] for p in got[1]['probes']] == [p['mean_scores'] for p in expected[1]['probes']]
    # nothing the killed process wrote is lost: later records are marked, not duplicated
    everything = interrupted.records(include_superseded=True)
    assert len(everything) - len(got) == sum(1 for r in everything if r.get('superseded'))
