"""The start-up check of a dataset section, shared by training (preflight) and test.py.

Its `type` is registered; LossAgent's own datasets (those with an `OPTIONS` tuple) get only keys
they or BasicSR's loader read; data folders named by `dataroot*` / `meta_info*` keys exist.
BasicSR's own datasets keep BasicSR's behaviour for their keys.
"""

from __future__ import annotations

import os.path as osp

from basicsr.utils.registry import DATASET_REGISTRY
from lossagent_compat import lookup, registered, unknown_name
from lossagent_errors import OptionError, check_keys

DATA_ROOT_PREFIXES = ('dataroot', 'meta_info')  # dataroot_gt, dataroot_lq, dataroot_derain, meta_info_file...
DATA_HELP = 'see datasets/README.md for where each data set goes'
# what BasicSR's dataloader and dataset builder read from a dataset section, besides the dataset's own
LOADER_KEYS = (
    'name',
    'type',
    'phase',
    'scale',
    'io_backend',
    'use_shuffle',
    'num_worker_per_gpu',
    'batch_size_per_gpu',
    'dataset_enlarge_ratio',
    'prefetch_mode',
    'pin_memory',
    'persistent_workers',
    'num_prefetch_queue',
)


def check_dataset(key: str, opt, paths: bool = True) -> None:
    """`paths=False`: the schema only (a shipped option file whose data is not here yet)."""
    kind = opt.get('type') if isinstance(opt, dict) else None
    if not registered(DATASET_REGISTRY, kind):
        raise unknown_name(f'{key}.type', 'dataset', kind, DATASET_REGISTRY)
    own = getattr(lookup(DATASET_REGISTRY, kind), 'OPTIONS', None)
    if own is not None:
        check_keys(opt, LOADER_KEYS + tuple(own), key)
    if not paths or (opt.get('io_backend') or {}).get('type', 'disk') != 'disk':
        return  # lmdb and others check their own paths
    for root_key, path in opt.items():
        if root_key.startswith(DATA_ROOT_PREFIXES) and isinstance(path, str) and not osp.exists(osp.expanduser(path)):
            raise OptionError(f'{key}.{root_key}: {path} does not exist ({DATA_HELP})')
