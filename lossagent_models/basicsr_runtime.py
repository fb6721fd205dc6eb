"""The one place where BasicSR's CUDA-only runtime assumptions are replaced.

BasicSR 1.4.2 assumes a GPU (and the old launcher) in a few places that a CPU run, a gloo
run or a resumed run reaches. `install()` swaps in versions that work everywhere; train.py
calls it before handing over to `basicsr.train.train_pipeline`:

- `--local-rank=N` (torch.distributed.launch since torch 2.0) is accepted like `--local_rank`;
- `init_dist('pytorch')` uses NCCL with one GPU per local rank when CUDA is there and gloo
  otherwise (BasicSR calls `torch.cuda.set_device` unconditionally);
- DDP wraps CPU modules without `device_ids` (BasicSR passes the current CUDA device);
- the options are checked (`preflight.check_options`) before anything is built: BasicSR's own
  errors for a wrong name or path come late and do not name the option key;
- `load_resume_state` maps the state onto this process' device (BasicSR: the current CUDA
  device), finds `--auto_resume` states in this experiment's folder (BasicSR: relative to the
  working directory), and loads with `weights_only=True`;
- after a resume, the first epoch skips the batches the interrupted run already consumed, so
  the resumed run sees the same data in the same order (BasicSR restarts the epoch).
"""
from __future__ import annotations

import datetime
import os
import os.path as osp
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from basicsr import train as basicsr_train
from basicsr.models import base_model
from basicsr.utils import check_resume, get_root_logger
from basicsr.utils import options as basicsr_options

from .preflight import check_options

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


def latest_state(states_dir: str):
    if not osp.isdir(states_dir):
        return None
    iters = [int(f[:-len('.state')]) for f in os.listdir(states_dir)
             if f.endswith('.state') and f[:-len('.state')].isdigit()]
    return osp.join(states_dir, f'{max(iters)}.state') if iters else None


def load_resume_state(opt: dict):
    """`--auto_resume` picks the newest state of this experiment; `path.resume_state` names one.

    This is the first thing `train_pipeline` does with the parsed options, so the options are
    checked here, before any folder, dataset or network is made.
    """
    check_options(opt)
    if opt['auto_resume']:
        path = latest_state(opt['path']['training_states'])
        if path is not None:
            opt['path']['resume_state'] = path
    else:
        path = opt['path'].get('resume_state')
    if path is None:
        return None
    if not osp.isfile(path):
        raise FileNotFoundError(f'path.resume_state: {path} does not exist')
    state = torch.load(path, map_location=run_device(opt), weights_only=True)
    check_resume(opt, state['iter'])
    opt['_resumed_from'] = {'epoch': int(state['epoch']), 'iter': int(state['iter'])}
    return state


class _SkipOnce:
    """Wraps a sampler so that its next epoch starts `skip` samples in."""

    def __init__(self, sampler, skip: int):
        self.sampler = sampler
        self.skip = skip

    def __iter__(self):
        indices = list(iter(self.sampler))
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])

    def __len__(self):
        return len(self.sampler)

    def __getattr__(self, name):
        return getattr(self.sampler, name)


def create_train_val_dataloader(opt, logger):
    train_loader, train_sampler, val_loaders, total_epochs, total_iters = _basicsr_create_loaders(opt, logger)
    resumed = opt.get('_resumed_from')
    if resumed and train_loader is not None:
        per_epoch = len(train_loader)
        consumed = resumed['iter'] - resumed['epoch'] * per_epoch
        if 0 < consumed <= per_epoch and train_loader.batch_sampler is not None:
            skip = consumed * train_loader.batch_sampler.batch_size
            train_loader.batch_sampler.sampler = _SkipOnce(train_loader.batch_sampler.sampler, skip)
            get_root_logger().info(f'Resume: epoch {resumed["epoch"]} continues after its first {consumed} batches')
    return train_loader, train_sampler, val_loaders, total_epochs, total_iters


_basicsr_create_loaders = basicsr_train.create_train_val_dataloader


def install() -> None:
    sys.argv = normalize_launcher_args(sys.argv)
    basicsr_options.init_dist = init_dist
    base_model.BaseModel.model_to_device = model_to_device
    basicsr_train.load_resume_state = load_resume_state
    basicsr_train.create_train_val_dataloader = create_train_val_dataloader
