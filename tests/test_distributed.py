"""Distributed training on CPU with gloo: every rank applies the same weights from the same iteration.

One node with two ranks (torchrun, the old torch.distributed.launch), two "nodes" of one rank each on
127.0.0.1 (torchrun --nnodes 2 --node_rank 0/1), and BasicSR's `--launcher slurm` with SLURM's
environment variables set as srun sets them for two tasks on two nodes.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from training import ROOT, tiny_options


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def applied(run, rank):
    path = run.root / 'agent' / f'applied_rank{rank}.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_identical_weights(run, stages):
    records = run.records()
    assert [r['stage'] for r in records] == list(range(stages + 1))
    rank0, rank1 = applied(run, 0), applied(run, 1)
    assert rank0 == rank1
    stage_iters = run.opt['agent']['stage_iters']
    assert [a['from_iteration'] for a in rank0] == [k * stage_iters + 1 for k in range(1, stages + 1)]
    assert [a['weights'] for a in rank0] == [r['weights_after'] for r in records[1:]]
    assert len({json.dumps(a['weights']) for a in rank0}) > 1  # the random policy did change them


def train_together(run, commands, envs, timeout=300):
    """Start one train.py per "node" at once (as a cluster would) and wait for all of them."""
    procs = [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, 'OMP_NUM_THREADS': '1', **env},
        )
        for cmd, env in zip(commands, envs)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, f'a node failed ({proc.returncode}):\n{out[-6000:]}'


@pytest.mark.parametrize('launcher', ['torchrun', 'torch.distributed.launch'])
def test_two_gloo_ranks_train_with_identical_weights(make_run, launcher):
    opt = tiny_options(f'dist_{launcher.replace(".", "_")}', stage_iters=2, total_iter=8, policy={'type': 'random'})
    run = make_run(opt)
    module = 'torch.distributed.run' if launcher == 'torchrun' else 'torch.distributed.launch'
    # the old launcher (without --use_env) passes --local-rank=N to the script
    run.train(
        '--launcher',
        'pytorch',
        timeout=400,
        env={'OMP_NUM_THREADS': '1'},
        launcher=[sys.executable, '-m', module, '--nproc_per_node=2', f'--master_port={free_port()}'],
    )
    check_identical_weights(run, 4)


def test_two_torchrun_nodes_train_with_identical_weights(make_run):
    run = make_run(tiny_options('dist_nodes', stage_iters=2, total_iter=4, policy={'type': 'random'}))
    port = free_port()
    commands = [
        [
            sys.executable,
            '-m',
            'torch.distributed.run',
            '--nnodes=2',
            f'--node_rank={node}',
            '--nproc_per_node=1',
            '--master_addr=127.0.0.1',
            f'--master_port={port}',
            str(ROOT / 'train.py'),
            '-opt',
            str(run.yml),
            '--launcher',
            'pytorch',
        ]
        for node in (0, 1)
    ]
    train_together(run, commands, [{}, {}])
    check_identical_weights(run, 2)


def test_slurm_launcher_two_tasks_on_two_nodes(make_run):
    opt = tiny_options('dist_slurm', stage_iters=2, total_iter=4, policy={'type': 'random'})
    opt['dist_params'] = {'backend': 'nccl', 'port': free_port()}  # BasicSR's keys; gloo is used without CUDA
    run = make_run(opt)
    command = [sys.executable, str(ROOT / 'train.py'), '-opt', str(run.yml), '--launcher', 'slurm']
    slurm = {'SLURM_NTASKS': '2', 'SLURM_NODELIST': '127.0.0.[1-2]', 'SLURM_LOCALID': '0'}  # one task per node
    train_together(run, [command, command], [{**slurm, 'SLURM_PROCID': str(rank)} for rank in (0, 1)])
    check_identical_weights(run, 2)


def test_slurm_launcher_outside_srun_is_one_line(make_run):
    run = make_run(tiny_options('dist_no_slurm'))
    env = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'train.py'), '-opt', str(run.yml), '--launcher', 'slurm'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'train.py: error: --launcher slurm: SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST not set: run train.py under '
        'srun (srun python train.py -opt X.yml --launcher slurm), or start it with torchrun on each node instead '
        '(--launcher pytorch; README, "Multi-node")'
    ]
    assert not run.root.exists()  # nothing written


def test_first_host_of_slurm_node_lists():
    from lossagent_runtime.basicsr_fixes import first_host, slurm_environment

    assert [first_host(n) for n in ('node[01-04,07],gpu3', 'gpu3', 'a[1-2]-ib,b3', 'n[8,10-12]')] == [
        'node01',
        'gpu3',
        'a1-ib',
        'n8',
    ]
    env = {'SLURM_PROCID': '3', 'SLURM_NTASKS': '8', 'SLURM_LOCALID': '3', 'SLURM_JOB_NODELIST': 'gpu[1-2]'}
    assert slurm_environment(env) == {
        'RANK': '3',
        'WORLD_SIZE': '8',
        'LOCAL_RANK': '3',
        'MASTER_ADDR': 'gpu1',
        'MASTER_PORT': '29500',
    }
    assert slurm_environment({**env, 'MASTER_PORT': '1234'})['MASTER_PORT'] == '1234'
    assert slurm_environment({**env, 'MASTER_PORT': '1234'}, port=4321)['MASTER_PORT'] == '4321'  # dist_params wins
