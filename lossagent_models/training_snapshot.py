"""A model's training state in memory: what a lookahead probe starts every candidate from.

Networks (bare, so DDP wrappers are untouched), their optimizers, and the counters a training
step changes. Learning-rate schedulers are not part of it: probes replay the learning rates the
main loop set, and the main loop's scheduler is the one that goes on.
"""

from __future__ import annotations

import copy

import torch


def _networks(model) -> dict[str, torch.nn.Module]:
    nets = {'net_g': model.get_bare_model(model.net_g)}
    if getattr(model, 'net_d', None) is not None:
        nets['net_d'] = model.get_bare_model(model.net_d)
    if getattr(model, 'net_g_ema', None) is not None:
        nets['net_g_ema'] = model.net_g_ema
    return nets


def take_snapshot(model) -> dict:
    """Copies (not views) of everything `train_step` changes; plain tensors and dicts only, so a
    snapshot also goes into a training state loaded with weights_only=True."""
    return {
        'nets': {
            name: {k: v.detach().clone() for k, v in net.state_dict().items()} for name, net in _networks(model).items()
        },
        'optimizers': [copy.deepcopy(o.state_dict()) for o in model.optimizers],
        'skipped_updates': int(model.skipped_updates),
        'nonfinite_reported': sorted(model.nonfinite_reported),
    }


def restore_snapshot(model, snapshot: dict) -> None:
    for name, net in _networks(model).items():
        net.load_state_dict(snapshot['nets'][name])
    for optimizer, state in zip(model.optimizers, snapshot['optimizers']):
        optimizer.load_state_dict(copy.deepcopy(state))  # the optimizer would otherwise share its tensors
    model.skipped_updates = int(snapshot['skipped_updates'])
    model.nonfinite_reported = set(snapshot['nonfinite_reported'])


def learning_rates(model) -> list[list[float]]:
    return [[group['lr'] for group in o.param_groups] for o in model.optimizers]


def set_learning_rates(model, lrs: list[list[float]]) -> None:
    for optimizer, rates in zip(model.optimizers, lrs):
        for group, lr in zip(optimizer.param_groups, rates):
            group['lr'] = lr
