"""Two CPU processes with gloo: every rank applies the same weights from the same iteration."""
import json
import socket
import sys

import pytest

from training import tiny_options


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def applied(run, rank):
    path = run.root / 'agent' / f'applied_rank{rank}.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize('launcher', ['torchrun', 'torch.distributed.launch'])
def test_two_gloo_ranks_train_with_identical_weights(make_run, launcher):
    opt = tiny_options(f'dist_{launcher.replace(".", "_")}', stage_iters=2, total_iter=8, policy={'type': 'random'})
    run = make_run(opt)
    module = 'torch.distributed.run' if launcher == 'torchrun' else 'torch.distributed.launch'
    # the old launcher (without --use_env) passes --local-rank=N to the script
    run.train('--launcher', 'pytorch', timeout=400, env={'OMP_NUM_THREADS': '1'},
              launcher=[sys.executable, '-m', module, '--nproc_per_node=2', f'--master_port={free_port()}'])
    records = run.records()
    assert [r['stage'] for r in records] == [0, 1, 2, 3, 4]
    rank0, rank1 = applied(run, 0), applied(run, 1)
    assert rank0 == rank1
    assert [a['from_iteration'] for a in rank0] == [3, 5, 7, 9]
    assert [a['weights'] for a in rank0] == [r['weights_after'] for r in records[1:]]
    assert len({json.dumps(a['weights']) for a in rank0}) > 1  # the random policy did change them
