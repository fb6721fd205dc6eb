"""wandb: with `logger.wandb.project` set, BasicSR syncs the run's TensorBoard folders to wandb, and the
agent's weights, scores and validation images arrive there beside BasicSR's losses.

`WANDB_MODE=offline` writes the run to `$WANDB_DIR/wandb/offline-run-*/run-*.wandb` (what `wandb sync`
uploads). That file is a LevelDB-style log of wandb's `Record` protobufs; `read_wandb_records` reads it.
"""

import glob
import json
import struct
from pathlib import Path

import pytest

from training import tiny_options


def read_wandb_records(path: str):
    """The `Record`s of an offline wandb run file: a 7-byte header (':W&B', magic, version), then
    32 KiB blocks of chunks, each a 7-byte header (crc32, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b':W&B', f'{path} is not a wandb run file'
    block, pos, pending = 32768, 7, b''
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack('<IHB', data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def history(path: str) -> dict[str, list]:
    """Every logged value per key, in the order logged (`agent/agent/weight/L1`: [1.0, 1.34, ...])."""
    out: dict[str, list] = {}
    for record in read_wandb_records(path):
        if record.WhichOneof('record_type') == 'history':
            for item in record.history.item:
                key = item.key or '/'.join(item.nested_key)
                out.setdefault(key, []).append(json.loads(item.value_json))
    return out


def test_offline_wandb_run_has_the_agent_weights_scores_and_images(make_run, tmp_path):
    opt = tiny_options('wandb_offline', stage_iters=2, total_iter=4, policy={'type': 'random'})
    opt['logger'].update(use_tb_logger=True, wandb={'project': 'lossagent-test', 'resume_id': None})
    run = make_run(opt)
    run.train(env={'WANDB_MODE': 'offline', 'WANDB_DIR': str(tmp_path), 'WANDB_SILENT': 'true'})
    files = glob.glob(str(tmp_path / 'wandb' / 'offline-run-*' / 'run-*.wandb'))
    assert len(files) == 1, files
    logged = history(files[0])
    records = run.records()
    # the agent's TensorBoard folder tb_logger/<name>/agent is the wandb prefix `agent/`
    for loss in ('L1', 'SSIM'):  # one value per boundary: the initial weights, then each decision
        assert logged[f'agent/agent/weight/{loss}'] == pytest.approx(
            [r['weights_after'][loss] for r in records], rel=1e-5
        )
    assert len(set(logged['agent/agent/weight/L1'])) > 1  # the random policy changed them
    for expert in ('NIQE', 'PSNR'):
        assert logged[f'agent/agent/score/{expert}'] == pytest.approx(
            [r['mean_scores'][expert] for r in records], rel=1e-5
        )
        assert len(logged[f'agent/agent/score/{expert}/image_0']) == len(records)
    assert logged['agent/agent/validation/_type'] == ['images/separated'] * len(records)
    for name in logged['agent/agent/validation/filenames'][0]:
        assert list((tmp_path / 'wandb').glob(f'offline-run-*/files/{name}')), name
    # and BasicSR's own scalars, which a second event file in BasicSR's folder used to hide
    assert len(logged['losses/l_g_L1']) == 4 and len(logged['w_L1']) == 4
