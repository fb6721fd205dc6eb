"""The places where BasicSR 1.4.2 assumes CUDA or the old launcher, replaced for CPU and gloo runs.

BasicSR calls these from inside its own code, so they are swapped in by `install()` (train.py
calls it first thing); everything else the pipeline does explicitly (lossagent_runtime/pipeline.py):

- `--local-rank=N` (torch.distributed.launch since torch 2.0) is accepted like `--local_rank`;
- `init_dist('pytorch')` uses NCCL with one GPU per local rank when CUDA is there and gloo
  otherwise (BasicSR calls `torch.cuda.set_device` unconditionally);
- DDP wraps CPU modules without `device_ids` (BasicSR passes the current CUDA device).
"""
from __future__ import annotations

import datetime
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from basicsr.models import base_model
from basicsr.utils import options as basicsr_options

DEFAULT_DIST_TIMEOUT_S = 1800


def normalize_launcher_args(argv: list[str]) -> list[str]:
    """`--local-rank=N` / `--local-rank N` -> `--local_rank ...`, and LOCAL_RANK set from it."""
    out = []
    for i, arg in enumerate(argv):
        if arg.startswith('--local-rank'):
            arg = '--local_rank' + arg[len('--local-rank'):]
        if arg.startswith('--local_rank'):
            value = arg.split('=', 1)[1] if '=' in arg else (argv[i + 1] if i + 1 < len(argv) else None)
            if value is not None:
                os.environ.setdefault('LOCAL_RANK', value)
        out.append(arg)
    return out


def init_dist(launcher: str, backend: str = 'nccl', **kwargs) -> None:
    if launcher != 'pytorch':
        return _basicsr_init_dist(launcher, backend, **kwargs)
    if dist.is_initialized():
        return
    timeout = datetime.timedelta(seconds=float(os.environ.get('LOSSAGENT_DIST_TIMEOUT_S', DEFAULT_DIST_TIMEOUT_S)))
    if torch.cuda.is_available():
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ.get('RANK', 0)))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dist.init_process_group(backend='nccl', timeout=timeout)
    else:
        dist.init_process_group(backend='gloo', timeout=timeout)


_basicsr_init_dist = basicsr_options.init_dist


def model_to_device(self, net):
    net = net.to(self.device)
    if self.opt['dist']:
        find_unused = self.opt.get('find_unused_parameters', False)
        if self.device.type == 'cuda':
            return DistributedDataParallel(net, device_ids=[torch.cuda.current_device()],
                                           find_unused_parameters=find_unused)
        return DistributedDataParallel(net, find_unused_parameters=find_unused)
    if self.opt['num_gpu'] > 1:
        return torch.nn.DataParallel(net)
    return net


def run_device(opt: dict) -> torch.device:
    if opt.get('num_gpu', 0) and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def install() -> None:
    sys.argv = normalize_launcher_args(sys.argv)
    basicsr_options.init_dist = init_dist
    base_model.BaseModel.model_to_device = model_to_device
