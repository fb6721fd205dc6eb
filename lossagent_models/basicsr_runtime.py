"""The one place where BasicSR's CUDA-only runtime assumptions are replaced.

BasicSR 1.4.2 assumes a GPU in a few places that a CPU run (and a gloo run) reaches:
- `basicsr.train.load_resume_state` maps the state onto `torch.cuda.current_device()` and
  looks for `--auto_resume` states relative to the working directory.
`install()` swaps in versions that pick the run's own device and paths; train.py calls it
before handing over to `basicsr.train.train_pipeline`.
"""
from __future__ import annotations

import os
import os.path as osp

import torch

from basicsr import train as basicsr_train
from basicsr.utils import check_resume


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
    """`--auto_resume` picks the newest state of this experiment; `path.resume_state` names one."""
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
    return state


def install() -> None:
    basicsr_train.load_resume_state = load_resume_state
