"""Reading an option file the way BasicSR does, with one-line errors where BasicSR gives a traceback."""

from __future__ import annotations

import os.path as osp

import yaml

from basicsr.utils.options import ordered_yaml
from lossagent_errors import OptionError


def load_yaml(path: str) -> dict:
    """The mapping in `path` (ordered, as BasicSR reads it); a syntax error names file, line and column."""
    if not osp.isfile(path):
        raise OptionError(f'-opt: option file {path} not found')
    try:
        with open(path, encoding='utf-8') as f:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f'{path}:{mark.line + 1}:{mark.column + 1}' if mark is not None else path
        problem = ' '.join(str(getattr(err, 'problem', None) or err).split())
        raise OptionError(f'{where}: YAML syntax error: {problem}') from None
    if not isinstance(opt, dict):
        raise OptionError(f'{path}: expected a mapping of options, got {type(opt).__name__}')
    return opt


REQUIRED_KEYS = ('name', 'model_type', 'num_gpu', 'datasets', 'path', 'train', 'logger')


def read_option_file(path: str, force_yml: list[str] | None = None) -> dict:
    """The option file as BasicSR will read it; syntax errors and --force_yml keys that do not exist
    are one line (BasicSR would raise a traceback, or a KeyError from inside an `exec`)."""
    opt = load_yaml(path)
    missing = [k for k in REQUIRED_KEYS if k not in opt]
    if missing:
        raise OptionError(f'{missing[0]}: required in {path} (BasicSR reads it)')
    if not isinstance(opt['datasets'], dict) or not all(isinstance(v, dict) for v in opt['datasets'].values()):
        raise OptionError(f'datasets: expected a mapping phase -> dataset options in {path}')
    for entry in force_yml or []:
        keys, sep, _ = entry.partition('=')
        if not sep or '=' in entry[len(keys) + 1 :]:
            raise OptionError(f'--force_yml {entry}: expected key:subkey=value')
        parent = opt
        path_keys = [k.strip() for k in keys.split(':')]
        for depth, key in enumerate(path_keys[:-1]):
            if not isinstance(parent, dict) or key not in parent:
                raise OptionError(f'--force_yml {entry}: {":".join(path_keys[: depth + 1])} is not in {path}')
            parent = parent[key]
        if not isinstance(parent, dict):
            raise OptionError(f'--force_yml {entry}: {":".join(path_keys[:-1])} is not a mapping')
    return opt


def option_arguments(argv: list[str]) -> tuple[str | None, list[str]]:
    """-opt and --force_yml from the command line, as BasicSR's argparse will read them."""
    path, force, i = None, [], 1
    while i < len(argv):
        if argv[i] == '-opt' and i + 1 < len(argv):
            path, i = argv[i + 1], i + 2
        elif argv[i] == '--force_yml':
            i += 1
            while i < len(argv) and not argv[i].startswith('-'):
                force.append(argv[i])
                i += 1
        else:
            i += 1
    return path, force
