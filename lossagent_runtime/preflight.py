"""Every option check, run before BasicSR creates (or archives) any folder.

A wrong name, path, number or key costs seconds, not hours, and never moves a finished run: each
problem is one line naming the option key and what is allowed. The sections LossAgent owns are
strict (an unknown key is an error with the closest valid one): `agent`, `agent.experts.*`,
`agent.policy`, the options of our datasets (lossagent_data/dataset_options.py), `train.losses.*`.
BasicSR's own sections keep BasicSR's behaviour; only their `type` names and data paths are
checked here. Each check is the one the builder itself runs, called early: nothing is built; the
losses and the agent section are parsed once into the specs the model and the stage hook receive.
"""

from __future__ import annotations

import os.path as osp

from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
from lossagent_compat import lookup, registered, unknown_name
from lossagent_data.dataset_options import check_dataset
from lossagent_errors import OptionError
from lossagent_models.lossagent_model import LossAgentModel
from lossagent_models.training_specs import TrainingSpecs, training_specs


def _check_type(key: str, opt, registry, what: str) -> None:
    kind = opt.get('type') if isinstance(opt, dict) else None
    if not registered(registry, kind):
        raise unknown_name(f'{key}.type', what, kind, registry)


def check_options(opt: dict) -> TrainingSpecs | None:
    """Raise OptionError for the first wrong option of a training run (BasicSR's parsed `opt`); return
    the parsed losses and agent options of a LossAgent model (None for BasicSR's own models), which
    the pipeline hands to the model (lossagent_models/training_specs.py)."""
    if not registered(MODEL_REGISTRY, opt.get('model_type')):
        raise unknown_name('model_type', 'model', opt.get('model_type'), MODEL_REGISTRY)
    for net in ('network_g', 'network_d'):
        if opt.get(net) is not None:
            _check_type(net, opt[net], ARCH_REGISTRY, 'architecture')
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        check_dataset(f'datasets.{phase}', dataset_opt)
    ours = issubclass(lookup(MODEL_REGISTRY, opt['model_type']), LossAgentModel)
    specs = None
    if ours and opt.get('is_train', True):
        specs = training_specs(opt)
    elif opt.get('agent'):
        raise OptionError(
            f'agent: model_type {opt["model_type"]} has no loss agent; use LossAgentModel or RealLossAgentModel'
        )
    resuming = opt.get('auto_resume') or opt['path'].get('resume_state')
    if not resuming:
        for key in ('pretrain_network_g', 'pretrain_network_d'):
            path = opt['path'].get(key)
            if path is not None and not osp.isfile(path):
                raise OptionError(
                    f'path.{key}: {path} does not exist (put the pretrained weights there, '
                    f'e.g. under experiments/pretrained_models/)'
                )
    return specs
