"""Checkpoints that are whole or skipped: a damaged newest state or network file is passed over with
one line, none good is one line, and a write that fails (a full disk, simulated with RLIMIT_FSIZE)
stops the run with one line and damages neither the previous state nor the decision log."""

import hashlib
import json
import resource
import subprocess
import sys

import pytest
import torch

from test_resume_kill import trajectory
from training import ROOT, tiny_options


# ---- unit: the files ------------------------------------------------------------------------------
def test_saved_files_are_verified_and_damage_is_named(tmp_path):
    from lossagent_models.checkpoint_files import check_checkpoint, save_verified, write_manifest

    (tmp_path / 'models').mkdir()
    (tmp_path / 'training_states').mkdir()
    net, state = tmp_path / 'models' / 'net_g_4.pth', tmp_path / 'training_states' / '4.state'
    files = {
        str(net): save_verified({'params': {'w': torch.arange(1000.0)}}, str(net)),
        str(state): save_verified({'iter': 4, 'rng': [1, 2]}, str(state)),
    }
    assert check_checkpoint(str(state), [str(net)]) is None  # no manifest yet: both are complete zips
    write_manifest(str(state), files, 4)
    manifest = json.loads((tmp_path / 'training_states' / '4.state.json').read_text())
    assert manifest['files']['models/net_g_4.pth']['sha256'] == hashlib.sha256(net.read_bytes()).hexdigest()
    assert check_checkpoint(str(state), []) is None
    assert torch.load(net, weights_only=True)['params']['w'][-1] == 999
    intact = net.read_bytes()
    data = bytearray(intact)
    data[len(data) // 2] ^= 0xFF
    net.write_bytes(bytes(data))
    assert check_checkpoint(str(state), []) == f'{net}: SHA-256 differs from the manifest (damaged)'
    net.write_bytes(intact)
    state.write_bytes(state.read_bytes()[:100])
    assert 'state: 100 bytes, the manifest says' in check_checkpoint(str(state), [])
    (tmp_path / 'training_states' / '4.state.json').unlink()
    assert check_checkpoint(str(state), []).endswith('not a complete checkpoint (File is not a zip file)')
    assert not list(tmp_path.rglob('*.tmp'))


def write_limited(limit: int):
    """In the child: a file-size limit, as a full disk (Python ignores SIGXFSZ, so writes fail with EFBIG)."""

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_failed_write_removes_its_files_and_raises(tmp_path):
    script = f"""
import torch, sys
sys.path.insert(0, {str(ROOT)!r})
from lossagent_models.checkpoint_files import save_verified
from lossagent_errors import WriteError
try:
    save_verified({{'w': torch.zeros(100000)}}, {str(tmp_path / 'big.pth')!r})
except WriteError as err:
    print(err)
"""
    out = subprocess.run(
        [sys.executable, '-c', script], capture_output=True, text=True, timeout=120, preexec_fn=write_limited(64 * 1024)
    )
    assert out.stdout.startswith(f'could not write {tmp_path / "big.pth"}: '), out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failed_log_append_leaves_the_log_as_it_was(tmp_path):
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from agent.decision_log import DecisionLog
from lossagent_errors import WriteError
log = DecisionLog({str(tmp_path / 'decisions.jsonl')!r})
log.append({{'stage': 0, 'iteration': 0, 'weights_before': {{'L1': 1.0}}, 'scores': {{}}}})
try:
    log.append({{'stage': 1, 'iteration': 4, 'weights_before': {{'L1': 1.0}}, 'scores': {{}}, 'x': 'y' * 5000}})
except WriteError as err:
    print(err)
"""
    out = subprocess.run(
        [sys.executable, '-c', script], capture_output=True, text=True, timeout=60, preexec_fn=write_limited(4096)
    )
    assert 'could not append to' in out.stdout and 'the log is as it was before' in out.stdout, out.stderr
    lines = (tmp_path / 'decisions.jsonl').read_text().splitlines()
    assert [json.loads(line)['stage'] for line in lines] == [0]


# ---- through train.py ---------------------------------------------------------------------------
def test_auto_resume_skips_a_damaged_newest_checkpoint(make_run):
    opt = tiny_options('ckpt_damaged', stage_iters=4, total_iter=12, policy={'type': 'adaptive'})
    opt['logger']['save_checkpoint_freq'] = 4
    run = make_run(opt)
    run.train()
    expected = trajectory(run.records())
    states, models = run.root / 'training_states', run.root / 'models'
    assert sorted(p.name for p in states.glob('*.state')) == ['12.state', '4.state', '8.state']
    newest = states / '12.state'
    size = json.loads((states / '12.state.json').read_text())['files']['training_states/12.state']['size']
    newest.write_bytes(newest.read_bytes()[:2000])  # what a full disk or a dying node leaves
    net = models / 'net_g_8.pth'  # BasicSR's network file of the next one, damaged in place
    data = bytearray(net.read_bytes())
    data[-3000] ^= 0xFF
    net.write_bytes(bytes(data))

    proc = run.train('--auto_resume')
    skipped = [line for line in proc.stderr.splitlines() if '--auto_resume: skipping' in line]
    assert skipped == [
        f'train.py: --auto_resume: skipping the checkpoint of iteration 12: {newest}: 2000 bytes, the manifest says '
        f'{size} bytes (incomplete)',
        f'train.py: --auto_resume: skipping the checkpoint of iteration 8: {net}: SHA-256 differs from the manifest '
        f'(damaged)',
    ]
    assert 'Traceback' not in proc.stderr
    assert any('Resuming training from epoch: 0, iter: 4.' in p.read_text() for p in run.root.glob('train_*.log'))
    assert trajectory(run.records()) == expected

    for state in states.glob('*.state'):  # none good: one line naming them, no traceback
        state.write_bytes(state.read_bytes()[:1000])
    proc = run.train('--auto_resume', check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'train.py: error: --auto_resume: no usable training state in {states} (')
    assert all(f'{states / name}: 1000 bytes' in last for name in ('4.state', '8.state', '12.state'))
    assert 'Traceback' not in proc.stderr


@pytest.mark.skipif(sys.platform != 'linux', reason='RLIMIT_FSIZE semantics')
def test_a_full_disk_stops_with_one_line_and_damages_nothing(make_run):
    opt = tiny_options('ckpt_full', stage_iters=4, total_iter=12, policy={'type': 'adaptive'})
    opt['logger']['save_checkpoint_freq'] = 6
    opt['agent']['stage_images'] = False
    run = make_run(opt)
    run.train('--force_yml', 'train:total_iter=6')  # a first run leaves a good checkpoint at 6
    states = run.root / 'training_states'
    good = {p.name: p.read_bytes() for p in states.iterdir()}
    net_size = (run.root / 'models' / 'net_g_6.pth').stat().st_size
    limit = net_size // 2  # the next network file cannot be written; logs and the decision log can
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'train.py'), '-opt', str(run.yml), '--auto_resume'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=write_limited(limit),
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'train.py: error: could not write {run.root / "models" / "net_g_12.pth"}: ')
    assert last.endswith(
        f'the newest good training state is {states / "6.state"}: free space and continue with --auto_resume'
    )
    assert 'Traceback' not in proc.stderr
    assert {p.name: p.read_bytes() for p in states.iterdir()} == good  # nothing of iteration 12, 6 untouched
    assert not list((run.root / 'models').glob('*12*'))
    log_lines = (run.root / 'agent' / 'decisions.jsonl').read_text().splitlines()
    attempted = [r for r in map(json.loads, log_lines) if r['iteration'] > 6]  # every line is whole JSON
    assert [r['iteration'] for r in attempted] == [8, 12]

    run.train('--auto_resume')  # space again: resumes from 6 and ends as the failed attempt went
    assert any('Resuming training from epoch: 0, iter: 6.' in p.read_text() for p in run.root.glob('train_*.log'))
    assert trajectory(run.records()[-2:]) == trajectory(attempted)
