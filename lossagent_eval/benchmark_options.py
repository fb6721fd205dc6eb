"""The benchmark option file (`test.py -opt options/test/<name>.yml`), read strictly before any work.

Schema: options/test/README.md (a plain BasicSR test option file goes to BasicSR instead:
`is_basicsr_test_file`). `load_options` checks every key (an unknown one is an error with
the closest valid one), every dataset section like training's and every metric against pyiqa;
`check_files` then checks that every checkpoint and data folder is there -- so a typo costs a
second, not a benchmark's worth of restorations.
"""

from __future__ import annotations

import os

from lossagent_data.dataset_options import check_dataset
from lossagent_errors import CheckpointError, OptionError, check_keys
from lossagent_iqa import check_metric_options
from basicsr.utils.options import _postprocess_yml_value
from lossagent_runtime.option_file import load_yaml

TOP_KEYS = (
    'name',
    'title',
    'scale',
    'num_gpu',
    'manual_seed',
    'pad_multiple',
    'path',
    'network_g',
    'methods',
    'datasets',
    'metrics',
    'val',
)
PATH_KEYS = ('results_root',)
VAL_KEYS = ('gt_row', 'save_images')
METHOD_KEYS = (
    'pretrain_network_g',
    'param_key_g',
    'strict_load_g',
    'strip_prefix',
    'network_g',
    'pad_multiple',
    'allow_random_init',
)
METRIC_KEYS = ('type', 'label', 'decimals', 'backend', 'crop_border', 'test_y_channel')
BASICSR_METRICS = ('psnr', 'ssim')  # the SR papers' Y-channel convention (basicsr.metrics)


def _section(opt: dict, key: str, known, path: str) -> dict:
    value = opt.get(key) or {}
    if not isinstance(value, dict):
        raise OptionError(f'{key}: expected a mapping in {path}, got {value!r}')
    if known is not None:
        check_keys(value, known, key)
    return value


def check_metric(key: str, mopt) -> None:
    mopt = dict(mopt or {})
    kind = mopt.get('type', key)
    backend = mopt.get('backend', 'basicsr' if kind in BASICSR_METRICS else 'pyiqa')
    rest = {k: v for k, v in mopt.items() if k not in METRIC_KEYS}
    if backend == 'basicsr':
        if kind not in BASICSR_METRICS:
            raise OptionError(f'metrics.{key}: backend basicsr only has {list(BASICSR_METRICS)}')
        check_keys(rest, (), f'metrics.{key}')
    elif backend == 'pyiqa':
        check_metric_options(kind, rest, f'metrics.{key}', own_keys=METRIC_KEYS)
    else:
        raise OptionError(f"metrics.{key}.backend: got {backend!r}; expected 'pyiqa' or 'basicsr'")


def is_basicsr_test_file(opt: dict) -> bool:
    """A BasicSR test option file (`datasets: test_1: ...`, `val: metrics`, `path.pretrain_network_g`)
    rather than our methods x metrics table: it has neither `methods` nor a top-level `metrics`."""
    return 'methods' not in opt and 'metrics' not in opt and 'datasets' in opt


def apply_force_yml(opt: dict, entries, path: str) -> dict:
    """BasicSR's `--force_yml key:sub=value` (values read as BasicSR reads them); a parent key that does
    not exist is one line naming it (BasicSR raises a KeyError from inside an `exec`)."""
    for entry in entries or []:
        keys, sep, value = entry.partition('=')
        path_keys = [k.strip() for k in keys.split(':')]
        if not sep or not all(path_keys):
            raise OptionError(f'--force_yml {entry}: expected key:subkey=value')
        node = opt
        for depth, key in enumerate(path_keys[:-1]):
            if not isinstance(node, dict) or key not in node:
                raise OptionError(f'--force_yml {entry}: {":".join(path_keys[: depth + 1])} is not in {path}')
            node = node[key]
        if not isinstance(node, dict):
            raise OptionError(f'--force_yml {entry}: {":".join(path_keys[:-1])} is not a mapping')
        node[path_keys[-1]] = _postprocess_yml_value(value.strip())
    return opt


def load_options(path: str, force_yml=None) -> dict:
    """The validated test options of `path` (with `_file` set to it), after `--force_yml` entries."""
    opt = apply_force_yml(load_yaml(path), force_yml, path)
    check_keys(opt, TOP_KEYS, '')
    for key in ('name', 'methods', 'datasets', 'metrics'):
        if not opt.get(key):
            raise OptionError(f'{key}: required in {path} (see options/test/README.md)')
    _section(opt, 'path', PATH_KEYS, path)
    _section(opt, 'val', VAL_KEYS, path)
    for method, mopt in _section(opt, 'methods', None, path).items():
        mopt = mopt or {}
        check_keys(mopt, METHOD_KEYS, f'methods.{method}')
        if mopt.get('pretrain_network_g') is None and not mopt.get('allow_random_init', False):
            raise OptionError(f'methods.{method}.pretrain_network_g: required in {path} (or allow_random_init: true)')
        if not (mopt.get('network_g') or opt.get('network_g')):
            raise OptionError(f'methods.{method}.network_g: missing, and there is no shared network_g in {path}')
    for name, dopt in _section(opt, 'datasets', None, path).items():
        check_dataset(f'datasets.{name}', dopt, paths=False)
    for key, mopt in _section(opt, 'metrics', None, path).items():
        check_metric(key, mopt)
    opt['_file'] = path
    return opt


def check_files(opt: dict) -> None:
    """Every checkpoint and data folder the options name is there (before minutes of work)."""
    for method, mopt in opt['methods'].items():
        ckpt = (mopt or {}).get('pretrain_network_g')
        if ckpt is not None and not os.path.isfile(ckpt):
            raise CheckpointError(
                f'methods.{method}.pretrain_network_g: checkpoint {ckpt!r} not found; '
                f'place the file there or fix the option in {opt["_file"]}'
            )
    for name, dopt in opt['datasets'].items():
        check_dataset(f'datasets.{name}', dopt)
