"""`train.py`'s pipeline: BasicSR's training loop, with each step of a run named.

    read the option file     YAML syntax and --force_yml keys, one line per mistake
    parse the options        BasicSR's parse_options (distributed set-up, seeds, --force_yml)
    check the options        lossagent_runtime/preflight.py: everything, before any folder exists
    load the resume state    --auto_resume finds this experiment's newest whole checkpoint (a damaged
                             or incomplete newer one is skipped with one line)
    make the folders         BasicSR's experiment folders (a new run archives an old one)
    start the loggers        log file, TensorBoard, wandb (and the run board, with agent.board)
    build data and model     a resumed epoch skips the batches the interrupted run used
    train                    BasicSR's loop: learning rate, feed_data, optimize_parameters, log,
                             checkpoint, validation; on SIGTERM/SIGUSR1 (logger.preempt_signals) the
                             state of the iteration just finished is saved and the run exits with 75
                             (preemption.py)
    finish training          the model closes its agent (a pending decision is recorded, the run
                             plotted), then BasicSR saves the latest model and validates

The steps are BasicSR's own functions where BasicSR has them; the loop is BasicSR 1.4.2's
`train_pipeline` loop, unchanged in what it does and in which order, plus the stop check at the
end of each iteration. A checkpoint that cannot be written (disk full) stops the run with one line
naming the file and the newest good state (lossagent_models/checkpoint_files.py): training on
without checkpoints would risk more work than it saves.
"""

from __future__ import annotations

import datetime
import logging
import os
import os.path as osp
import sys
import time

import torch
import torch.distributed as dist

from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.models import build_model
from basicsr.train import create_train_val_dataloader, init_tb_loggers
from basicsr.utils import (
    AvgTimer,
    MessageLogger,
    check_resume,
    get_env_info,
    get_root_logger,
    get_time_str,
    make_exp_dirs,
    mkdir_and_rename,
)
from basicsr.utils.options import copy_opt_file, dict2str, parse_options
from agent.runs.board.launch import start_board
from lossagent_errors import CheckpointError, OptionError, WriteError
from lossagent_models.checkpoint_files import check_checkpoint
from lossagent_models.training_specs import with_specs

from .basicsr_fixes import run_device
from .debug_run import shrink_agent_for_debug
from .option_file import option_arguments, read_option_file
from .preemption import EXIT_PREEMPTED, Preempted, StopRequest, preempt_signals
from .preflight import check_options


# ---- steps before anything is written --------------------------------------------------------
def state_iterations(states_dir: str) -> list[int]:
    """The iterations of the training states in `states_dir`, newest first."""
    if not osp.isdir(states_dir):
        return []
    return sorted(
        (
            int(f[: -len('.state')])
            for f in os.listdir(states_dir)
            if f.endswith('.state') and f[: -len('.state')].isdigit()
        ),
        reverse=True,
    )


def checkpoint_problem(opt: dict, state_path: str, iteration: int) -> str | None:
    """What is wrong with the checkpoint of `iteration` (its state and BasicSR's network files), or None."""
    models = [osp.join(opt['path']['models'], f'net_g_{iteration}.pth')]
    net_d = osp.join(opt['path']['models'], f'net_d_{iteration}.pth')
    if osp.exists(net_d):
        models.append(net_d)
    return check_checkpoint(state_path, models)


def newest_good_state(opt: dict) -> str | None:
    """The newest training state whose checkpoint is whole; each damaged or incomplete newer one is
    skipped with one line; CheckpointError (one line naming them) when there are states but none is good."""
    states_dir = opt['path']['training_states']
    skipped = []
    for iteration in state_iterations(states_dir):
        path = osp.join(states_dir, f'{iteration}.state')
        problem = checkpoint_problem(opt, path, iteration)
        if problem is None:
            return path
        skipped.append(problem)
        if opt.get('rank', 0) == 0:
            print(
                f'train.py: --auto_resume: skipping the checkpoint of iteration {iteration}: {problem}',
                file=sys.stderr,
                flush=True,
            )
    if skipped:
        raise CheckpointError(
            f'--auto_resume: no usable training state in {states_dir} ({"; ".join(skipped)}); '
            f'move them away to start from iteration 0'
        )
    return None


def load_resume_state(opt: dict):
    """`--auto_resume` picks the newest good state of this experiment (BasicSR: relative to the working
    directory); `path.resume_state` names one. Checked, then loaded onto this process' device, weights only."""
    if opt['auto_resume']:
        path = newest_good_state(opt)
        if path is not None:
            opt['path']['resume_state'] = path
    else:
        path = opt['path'].get('resume_state')
        if path is not None:
            if not osp.isfile(path):
                raise OptionError(f'path.resume_state: {path} does not exist')
            iteration = osp.basename(path)[: -len('.state')]
            problem = (
                checkpoint_problem(opt, path, int(iteration)) if iteration.isdigit() else check_checkpoint(path, [])
            )
            if problem:
                raise CheckpointError(f'path.resume_state: {problem}')
    if path is None:
        return None
    try:
        state = torch.load(path, map_location=run_device(opt), weights_only=True)
    except Exception as err:  # checked above; a file that still does not load is named, not traced
        raise CheckpointError(f'{path}: cannot be loaded ({str(err).splitlines()[0] if str(err) else err!r})') from None
    check_resume(opt, state['iter'])
    return state


# ---- steps that write ------------------------------------------------------------------------
def make_folders(opt: dict, resume_state) -> None:
    if resume_state is None:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
            mkdir_and_rename(osp.join(opt['root_path'], 'tb_logger', opt['name']))


def start_loggers(opt: dict, opt_path: str):
    copy_opt_file(opt_path, opt['path']['experiments_root'])
    # BasicSR's logger must not be asked for before this point, or it never gets its file
    log_file = osp.join(opt['path']['log'], f'train_{opt["name"]}_{get_time_str()}.log')
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    return logger, init_tb_loggers(opt)


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


def create_dataloaders(opt: dict, logger, resume_state):
    """BasicSR's loaders; after a resume the first epoch skips the batches already consumed, so the
    resumed run sees the same data in the same order (BasicSR restarts the epoch)."""
    train_loader, train_sampler, val_loaders, total_epochs, total_iters = create_train_val_dataloader(opt, logger)
    if resume_state and train_loader is not None:
        consumed = int(resume_state['iter']) - int(resume_state['epoch']) * len(train_loader)
        if 0 < consumed <= len(train_loader) and train_loader.batch_sampler is not None:
            skip = consumed * train_loader.batch_sampler.batch_size
            train_loader.batch_sampler.sampler = _SkipOnce(train_loader.batch_sampler.sampler, skip)
            logger.info(f'Resume: epoch {resume_state["epoch"]} continues after its first {consumed} batches')
    return train_loader, train_sampler, val_loaders, total_epochs, total_iters


def prefetcher_for(opt: dict, train_loader, logger):
    prefetch_mode = opt['datasets']['train'].get('prefetch_mode')
    if prefetch_mode is None or prefetch_mode == 'cpu':
        return CPUPrefetcher(train_loader)
    if prefetch_mode == 'cuda':
        logger.info(f'Use {prefetch_mode} prefetch dataloader')
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise OptionError('datasets.train.pin_memory: must be true for prefetch_mode cuda')
        return CUDAPrefetcher(train_loader, opt)
    raise OptionError(f"datasets.train.prefetch_mode: got {prefetch_mode!r}; expected ~, 'cpu' or 'cuda'")


# ---- checkpoints and preemption --------------------------------------------------------------
def save_checkpoint(opt: dict, model, epoch: int, current_iter: int) -> None:
    """`model.save` on every rank (rank 0 writes). With several ranks rank 0's outcome is broadcast,
    which is also a barrier: no rank goes on (or exits) before the checkpoint is whole. A failed write
    stops every rank with one line naming the file; earlier checkpoints are untouched."""
    error = None
    try:
        model.save(epoch, current_iter)
    except WriteError as err:
        error = str(err)
    if opt.get('dist') and dist.is_initialized():
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        good = newest_good_state(opt) if current_iter != -1 else None
        raise WriteError(
            f'{error}; '
            + (
                f'the newest good training state is {good}: free space and continue with --auto_resume'
                if good
                else 'no earlier training state was written'
            )
        )


def preempt(opt: dict, model, stop: StopRequest, epoch: int, current_iter: int, saved: bool, logger) -> None:
    """Save the state of this iteration (unless the periodic checkpoint just did) and raise Preempted."""
    path = osp.join(opt['path']['training_states'], f'{current_iter}.state')
    logger.info(f'{stop.signal_name()}: stopping after iteration {current_iter}; saving the training state')
    if not saved:
        save_checkpoint(opt, model, epoch, current_iter)
    extra = len(stop.received) - 1
    raise Preempted(
        f'stopped by {stop.signal_name()} after iteration {current_iter}: training state {path}; '
        f'continue with --auto_resume (exit status {EXIT_PREEMPTED})'
        + (f'; {extra} further signal(s) ignored while saving' if extra > 0 else '')
    )


def release(model, tb_logger, board) -> None:
    """What a preempted run lets go of: the agent (a managed LLM server stops), TensorBoard, the board."""
    close_agent = getattr(model, 'close_agent', None)
    if close_agent is not None:
        close_agent()
    if tb_logger:
        tb_logger.close()
    if board is not None:
        board.stop()


# ---- the run ---------------------------------------------------------------------------------
def train_pipeline(root_path: str, argv: list[str]) -> None:
    opt_path, force_yml = option_arguments(argv)
    if opt_path is not None:
        read_option_file(opt_path, force_yml)
    opt, args = parse_options(root_path, is_train=True)
    opt['root_path'] = root_path
    torch.backends.cudnn.benchmark = True
    debug_changes = shrink_agent_for_debug(opt)  # --debug: the run reaches the agent (debug_run.py)
    specs = check_options(opt)  # the parsed losses and agent section, for the model
    preempt_signals(opt)
    resume_state = load_resume_state(opt)
    make_folders(opt, resume_state)
    logger, tb_logger = start_loggers(opt, args.opt)
    if debug_changes:
        logger.info('Debug run, agent shortened: ' + '; '.join(debug_changes))
    board = start_board(opt, logger)  # agent.board: the run board in its own process
    train_loader, train_sampler, val_loaders, total_epochs, total_iters = create_dataloaders(opt, logger, resume_state)
    model = build_model(with_specs(opt, specs))
    start_epoch, current_iter = 0, 0
    if resume_state:
        model.resume_training(resume_state)  # optimizers, schedulers (and for ours: RNG, agent)
        logger.info(f'Resuming training from epoch: {resume_state["epoch"]}, iter: {resume_state["iter"]}.')
        start_epoch, current_iter = resume_state['epoch'], resume_state['iter']
    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    prefetcher = prefetcher_for(opt, train_loader, logger)

    logger.info(f'Start training from epoch: {start_epoch}, iter: {current_iter}')
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    stop = StopRequest(preempt_signals(opt)).install()  # SIGTERM/SIGUSR1: save at this iteration, exit 75
    try:
        for epoch in range(start_epoch, total_epochs + 1):
            train_sampler.set_epoch(epoch)
            prefetcher.reset()
            train_data = prefetcher.next()
            while train_data is not None:
                data_timer.record()
                current_iter += 1
                if current_iter > total_iters:
                    break
                model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
                model.feed_data(train_data)
                model.optimize_parameters(current_iter)
                iter_timer.record()
                if current_iter == 1:
                    msg_logger.reset_start_time()  # a more accurate ETA (not after a resume)
                if current_iter % opt['logger']['print_freq'] == 0:
                    log_vars = {
                        'epoch': epoch,
                        'iter': current_iter,
                        'lrs': model.get_current_learning_rate(),
                        'time': iter_timer.get_avg_time(),
                        'data_time': data_timer.get_avg_time(),
                    }
                    log_vars.update(model.get_current_log())
                    msg_logger(log_vars)
                saved = current_iter % opt['logger']['save_checkpoint_freq'] == 0
                if saved:
                    logger.info('Saving models and training states.')
                    save_checkpoint(opt, model, epoch, current_iter)
                if opt.get('val') is not None and current_iter % opt['val']['val_freq'] == 0:
                    if len(val_loaders) > 1:
                        logger.warning('Multiple validation datasets are *only* supported by SRModel.')
                    for val_loader in val_loaders:
                        model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
                if stop.requested():
                    preempt(opt, model, stop, epoch, current_iter, saved, logger)
                data_timer.start()
                iter_timer.start()
                train_data = prefetcher.next()
    except Preempted:
        release(model, tb_logger, board)
        raise
    finally:
        stop.uninstall()

    logger.info(f'End of training. Time consumed: {datetime.timedelta(seconds=int(time.time() - start_time))}')
    finish = getattr(model, 'finish_training', None)
    if finish is not None:  # BasicSR's own models have no agent to close
        finish()
    logger.info('Save the latest model.')
    save_checkpoint(opt, model, epoch=-1, current_iter=-1)  # -1 stands for the latest
    if opt.get('val') is not None:
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
    if tb_logger:
        tb_logger.close()
    if board is not None:
        board.stop()
