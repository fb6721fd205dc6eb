"""`train.py`'s pipeline: BasicSR's training loop, with each step of a run named.

    read the option file     YAML syntax and --force_yml keys, one line per mistake
    parse the options        BasicSR's parse_options (distributed set-up, seeds, --force_yml)
    check the options        lossagent_runtime/preflight.py: everything, before any folder exists
    load the resume state    --auto_resume finds this experiment's newest state
    make the folders         BasicSR's experiment folders (a new run archives an old one)
    start the loggers        log file, TensorBoard, wandb (and the run board, with agent.board)
    build data and model     a resumed epoch skips the batches the interrupted run used
    train                    BasicSR's loop: learning rate, feed_data, optimize_parameters, log,
                             checkpoint, validation
    finish training          the model closes its agent (a pending decision is recorded, the run
                             plotted), then BasicSR saves the latest model and validates

The steps are BasicSR's own functions where BasicSR has them; the loop is BasicSR 1.4.2's
`train_pipeline` loop, unchanged in what it does and in which order.
"""
from __future__ import annotations

import datetime
import logging
import os
import os.path as osp
import time

import torch

from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.models import build_model
from basicsr.train import create_train_val_dataloader, init_tb_loggers
from basicsr.utils import (AvgTimer, MessageLogger, check_resume, get_env_info, get_root_logger, get_time_str,
                           make_exp_dirs, mkdir_and_rename)
from basicsr.utils.options import copy_opt_file, dict2str, parse_options
from agent.runs.board.launch import start_board
from lossagent_errors import OptionError

from .basicsr_fixes import run_device
from .option_file import option_arguments, read_option_file
from .preflight import check_options

# ---- steps before anything is written --------------------------------------------------------
def latest_state(states_dir: str) -> str | None:
    if not osp.isdir(states_dir):
        return None
    iters = [int(f[:-len('.state')]) for f in os.listdir(states_dir)
             if f.endswith('.state') and f[:-len('.state')].isdigit()]
    return osp.join(states_dir, f'{max(iters)}.state') if iters else None


def load_resume_state(opt: dict):
    """`--auto_resume` picks the newest state of this experiment (BasicSR: relative to the working
    directory); `path.resume_state` names one. Loaded onto this process' device, weights only."""
    if opt['auto_resume']:
        path = latest_state(opt['path']['training_states'])
        if path is not None:
            opt['path']['resume_state'] = path
    else:
        path = opt['path'].get('resume_state')
    if path is None:
        return None
    if not osp.isfile(path):
        raise OptionError(f'path.resume_state: {path} does not exist')
    state = torch.load(path, map_location=run_device(opt), weights_only=True)
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
    log_file = osp.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log")
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


# ---- the run ---------------------------------------------------------------------------------
def train_pipeline(root_path: str, argv: list[str]) -> None:
    opt_path, force_yml = option_arguments(argv)
    if opt_path is not None:
        read_option_file(opt_path, force_yml)
    opt, args = parse_options(root_path, is_train=True)
    opt['root_path'] = root_path
    torch.backends.cudnn.benchmark = True
    check_options(opt)
    resume_state = load_resume_state(opt)
    make_folders(opt, resume_state)
    logger, tb_logger = start_loggers(opt, args.opt)
    board = start_board(opt, logger)  # agent.board: the run board in its own process
    train_loader, train_sampler, val_loaders, total_epochs, total_iters = \
        create_dataloaders(opt, logger, resume_state)
    model = build_model(opt)
    start_epoch, current_iter = 0, 0
    if resume_state:
        model.resume_training(resume_state)  # optimizers, schedulers (and for ours: RNG, agent)
        logger.info(f"Resuming training from epoch: {resume_state['epoch']}, iter: {resume_state['iter']}.")
        start_epoch, current_iter = resume_state['epoch'], resume_state['iter']
    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    prefetcher = prefetcher_for(opt, train_loader, logger)

    logger.info(f'Start training from epoch: {start_epoch}, iter: {current_iter}')
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
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
                log_vars = {'epoch': epoch, 'iter': current_iter, 'lrs': model.get_current_learning_rate(),
                            'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()}
                log_vars.update(model.get_current_log())
                msg_logger(log_vars)
            if current_iter % opt['logger']['save_checkpoint_freq'] == 0:
                logger.info('Saving models and training states.')
                model.save(epoch, current_iter)
            if opt.get('val') is not None and current_iter % opt['val']['val_freq'] == 0:
                if len(val_loaders) > 1:
                    logger.warning('Multiple validation datasets are *only* supported by SRModel.')
                for val_loader in val_loaders:
                    model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()

    logger.info(f'End of training. Time consumed: {datetime.timedelta(seconds=int(time.time() - start_time))}')
    finish = getattr(model, 'finish_training', None)
    if finish is not None:  # BasicSR's own models have no agent to close
        finish()
    logger.info('Save the latest model.')
    model.save(epoch=-1, current_iter=-1)  # -1 stands for the latest
    if opt.get('val') is not None:
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
    if tb_logger:
        tb_logger.close()
    if board is not None:
        board.stop()
