"""The places where BasicSR 1.4.2 assumes CUDA or the old launcher, replaced for CPU and gloo runs.

BasicSR calls these from inside its own code, so they are swapped in by `install()` (train.py
calls it first thing); everything else the pipeline does explicitly (lossagent_runtime/pipeline.py):

- `--local-rank=N` (torch.distributed.launch since torch 2.0) is accepted like `--local_rank`;
- `init_dist('pytorch')` uses NCCL with one GPU per local rank when CUDA is there and gloo
  otherwise (BasicSR calls `torch.cuda.set_device` unconditionally);
- `close_dist()` destroys the process group before the interpreter exits, PyTorch's documented
  shutdown (BasicSR never does), and then lets gloo's worker threads finish with the GIL free (see
  the function: without it ~1 finished two-rank run in 10-25 aborted at exit);
- `init_dist('slurm')` (`srun python train.py ... --launcher slurm`) reads SLURM's variables the
  same way, without `scontrol` when it is absent, and says in one line what is missing (BasicSR
  divides by the GPU count and shells out to `scontrol`);
- DDP wraps CPU modules without `device_ids` (BasicSR passes the current CUDA device);
- `logger.wandb.project` starts wandb with TensorBoard syncing as BasicSR does, on rank 0
  (BasicSR asks for `wandb.util.generate_id`, which wandb no longer has).
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from basicsr import train as basicsr_train
from basicsr.models import base_model
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils import options as basicsr_options
from lossagent_errors import UserError

DEFAULT_DIST_TIMEOUT_S = 1800


def normalize_launcher_args(argv: list[str]) -> list[str]:
    """`--local-rank=N` / `--local-rank N` -> `--local_rank ...`, and LOCAL_RANK set from it."""
    out = []
    for i, arg in enumerate(argv):
        if arg.startswith('--local-rank'):
            arg = '--local_rank' + arg[len('--local-rank') :]
        if arg.startswith('--local_rank'):
            value = arg.split('=', 1)[1] if '=' in arg else (argv[i + 1] if i + 1 < len(argv) else None)
            if value is not None:
                os.environ.setdefault('LOCAL_RANK', value)
        out.append(arg)
    return out


def init_dist(launcher: str, backend: str = 'nccl', port=None, **kwargs) -> None:
    """BasicSR's `init_dist`: `launcher` from `--launcher`, `backend`/`port` from `dist_params` (slurm only,
    as in BasicSR). NCCL with one GPU per local rank when CUDA is there, gloo otherwise."""
    if launcher not in ('pytorch', 'slurm'):
        raise UserError(f'--launcher {launcher}: expected none, pytorch or slurm')
    if dist.is_initialized():
        return
    if launcher == 'slurm':
        os.environ.update(slurm_environment(os.environ, port))
    timeout = datetime.timedelta(seconds=float(os.environ.get('LOSSAGENT_DIST_TIMEOUT_S', DEFAULT_DIST_TIMEOUT_S)))
    if torch.cuda.is_available():
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ.get('RANK', 0)))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dist.init_process_group(backend='nccl', timeout=timeout)
    else:
        dist.init_process_group(backend='gloo', timeout=timeout)


# How long a finished multi-rank process sleeps, the GIL released, before the interpreter finalises.
WORKER_DRAIN_S = 0.5


def close_dist() -> None:
    """Destroy the process groups, if this process has any (local to this rank for gloo and NCCL), and
    give the collectives' worker threads time to let go of their tensors.

    A gloo worker thread drops a finished collective's tensors after `wait()` has returned in Python, and
    dropping a tensor that Python made takes the GIL. If the interpreter is already finalising, taking
    the GIL ends that thread inside a destructor and std::terminate aborts the process ("terminate called
    without an active exception", status -6) although the run finished and saved: seen in gdb on a
    pt_gloo_runloop thread destroying an AsyncBroadcastWork while the main thread was in Py_FinalizeEx
    (pytorch/pytorch#190489, open). Sleeping releases the GIL for it while it can still be taken.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    several = dist.get_world_size() > 1
    dist.destroy_process_group()
    if several:
        time.sleep(WORKER_DRAIN_S)


SLURM_HELP = (
    'run train.py under srun (srun python train.py -opt X.yml --launcher slurm), or start it with '
    'torchrun on each node instead (--launcher pytorch; README, "Multi-node")'
)


def slurm_environment(environ, port=None) -> dict:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT of one srun task, from SLURM's variables.

    The master is the first host of the job's node list (`scontrol show hostnames` when it is there);
    the port is `dist_params.port`, else $MASTER_PORT, else 29500 (BasicSR's order).
    """
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS') if k not in environ]
    nodelist = environ.get('SLURM_STEP_NODELIST') or environ.get('SLURM_JOB_NODELIST') or environ.get('SLURM_NODELIST')
    if nodelist is None and 'MASTER_ADDR' not in environ:
        missing.append('SLURM_NODELIST')
    if missing:
        raise UserError(f'--launcher slurm: {", ".join(missing)} not set: {SLURM_HELP}')
    try:
        rank, world = int(environ['SLURM_PROCID']), int(environ['SLURM_NTASKS'])
        local_rank = int(environ.get('SLURM_LOCALID', 0))
    except ValueError as err:
        raise UserError(f'--launcher slurm: SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID must be integers ({err})') from None
    if not 0 <= rank < world:
        raise UserError(f'--launcher slurm: SLURM_PROCID={rank} is not below SLURM_NTASKS={world}')
    return {
        'RANK': str(rank),
        'WORLD_SIZE': str(world),
        'LOCAL_RANK': str(local_rank),
        'MASTER_ADDR': environ.get('MASTER_ADDR') or first_host(nodelist),
        'MASTER_PORT': str(port if port is not None else environ.get('MASTER_PORT', 29500)),
    }


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'node[01-04,07],gpu3' -> 'node01'."""
    if shutil.which('scontrol'):
        out = subprocess.run(['scontrol', 'show', 'hostnames', nodelist], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    entry = re.match(r'(?:[^,\[]|\[[^\]]*\])+', nodelist.strip())
    if entry is None:
        raise UserError(f'--launcher slurm: cannot read the node list {nodelist!r}; set MASTER_ADDR')
    return re.sub(r'\[([^\],-]+)[^\]]*\]', r'\1', entry.group(0))


def model_to_device(self, net):
    net = net.to(self.device)
    if self.opt['dist']:
        find_unused = self.opt.get('find_unused_parameters', False)
        if self.device.type == 'cuda':
            return DistributedDataParallel(
                net, device_ids=[torch.cuda.current_device()], find_unused_parameters=find_unused
            )
        return DistributedDataParallel(net, find_unused_parameters=find_unused)
    if self.opt['num_gpu'] > 1:
        return torch.nn.DataParallel(net)
    return net


def run_device(opt: dict) -> torch.device:
    if opt.get('num_gpu', 0) and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


@master_only
def init_wandb_logger(opt: dict) -> None:
    """BasicSR's: wandb syncs the run's TensorBoard folder (BasicSR's scalars and the agent's `agent/*`);
    `logger.wandb.resume_id` continues a wandb run. WANDB_MODE=offline writes it under ./wandb (WANDB_DIR)."""
    import wandb
    from wandb.sdk.lib.runid import generate_id

    resume_id = opt['logger']['wandb'].get('resume_id')
    run_id, resume = (resume_id, 'allow') if resume_id else (generate_id(), 'never')
    project = opt['logger']['wandb']['project']
    wandb.init(id=run_id, resume=resume, name=opt['name'], config=opt, project=project, sync_tensorboard=True)
    get_root_logger().info(f'Use wandb logger with id={run_id}; project={project}.')


def install() -> None:
    sys.argv = normalize_launcher_args(sys.argv)
    basicsr_options.init_dist = init_dist
    base_model.BaseModel.model_to_device = model_to_device
    basicsr_train.init_wandb_logger = init_wandb_logger  # what BasicSR's init_tb_loggers calls
