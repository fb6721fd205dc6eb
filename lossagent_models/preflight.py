"""Check the options before anything is built, so a wrong name or path costs seconds, not hours.

Each problem is reported as one line naming the option key and what is allowed. Deeper
checks (loss and metric names, agent options) happen when those are built, still before the
first iteration.
"""
from __future__ import annotations

import os.path as osp

from agent import OptionError
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY

DATA_ROOT_PREFIXES = ('dataroot', 'meta_info')  # dataroot_gt, dataroot_lq, dataroot_derain, meta_info_file...
DATA_HELP = 'see datasets/README.md for where each data set goes'


def registered(registry, name) -> bool:
    """As `registry.get` finds it: BasicSR registers some classes as `<name>_basicsr`."""
    return isinstance(name, str) and (name in registry or f'{name}_basicsr' in registry)


def registered_names(registry) -> str:
    return ', '.join(sorted({name.removesuffix('_basicsr') for name, _ in registry}))


def _check_type(key: str, opt: dict, registry, what: str) -> None:
    kind = opt.get('type') if isinstance(opt, dict) else None
    if not registered(registry, kind):
        raise OptionError(f"{key}.type: unknown {what} '{kind}'; registered: {registered_names(registry)}")


def _check_dataset(key: str, opt: dict) -> None:
    _check_type(key, opt, DATASET_REGISTRY, 'dataset')
    if (opt.get('io_backend') or {}).get('type', 'disk') != 'disk':
        return  # lmdb and others check their own paths
    for root_key, path in opt.items():
        if not root_key.startswith(DATA_ROOT_PREFIXES):
            continue
        if isinstance(path, str) and not osp.exists(osp.expanduser(path)):
            raise OptionError(f'{key}.{root_key}: {path} does not exist ({DATA_HELP})')


def check_options(opt: dict) -> None:
    if not registered(MODEL_REGISTRY, opt.get('model_type')):
        raise OptionError(f"model_type: unknown model '{opt.get('model_type')}'; "
                          f'registered: {registered_names(MODEL_REGISTRY)}')
    for net in ('network_g', 'network_d'):
        if opt.get(net) is not None:
            _check_type(net, opt[net], ARCH_REGISTRY, 'architecture')
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        _check_dataset(f'datasets.{phase}', dataset_opt)
    agent_opt = opt.get('agent')
    if agent_opt:
        if not isinstance(agent_opt.get('dataset'), dict):
            raise OptionError("agent.dataset: missing (BasicSR dataset options for the agent's validation images)")
        _check_dataset('agent.dataset', agent_opt['dataset'])
    resuming = opt.get('auto_resume') or opt['path'].get('resume_state')
    if not resuming:
        for key in ('pretrain_network_g', 'pretrain_network_d'):
            path = opt['path'].get(key)
            if path is not None and not osp.isfile(path):
                raise OptionError(f'path.{key}: {path} does not exist (put the pretrained weights there, '
                                  f'e.g. under experiments/pretrained_models/)')
