"""The loss repository L = sum_i w_i * L_i: named BasicSR losses whose weights the agent sets.

YAML (`train.losses`), names are what the LLM sees:

    losses:
      L1:         {type: L1Loss, loss_weight: 1.0}
      Perceptual: {type: PerceptualLoss, perceptual_weight: 0.1, layer_weights: {conv5_4: 1}}
      GAN:        {type: GANLoss, gan_type: vanilla, loss_weight: 0.01}

An option file written for BasicSR's SRGANModel (`pixel_opt`, `perceptual_opt`, `gan_opt`)
is read as the repository {L1 (or the pixel loss' name), Perceptual, GAN}.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from basicsr.losses import build_loss
from basicsr.utils.registry import LOSS_REGISTRY

from .iqa_metrics import MissingWeightsError
from .preflight import registered, registered_names
from agent import OptionError

ADVERSARIAL_TYPES = {'GANLoss', 'MultiScaleGANLoss'}
PERCEPTUAL_TYPES = {'PerceptualLoss'}
# The attribute holding a loss' weight, for losses that do not call it `loss_weight`.
WEIGHT_ATTRIBUTES = {'PerceptualLoss': 'perceptual_weight'}
LEGACY_KEYS = (('pixel_opt', None), ('perceptual_opt', 'Perceptual'), ('gan_opt', 'GAN'))
LEGACY_PIXEL_NAMES = {'L1Loss': 'L1', 'MSELoss': 'MSE', 'CharbonnierLoss': 'Charbonnier'}


@dataclass
class RepositoryEntry:
    name: str
    type: str
    criterion: nn.Module
    weight_attr: str
    role: str  # 'pixel' (loss(out, gt)), 'perceptual' ((percep, style)), 'adversarial'


def repository_options(train_opt: dict) -> 'OrderedDict[str, dict]':
    """The `train.losses` mapping, or one made from BasicSR's SRGANModel keys."""
    if train_opt.get('losses'):
        if any(train_opt.get(key) for key, _ in LEGACY_KEYS):
            raise OptionError('train: give either `losses` or pixel_opt/perceptual_opt/gan_opt, not both')
        losses = train_opt['losses']
        if not isinstance(losses, dict):
            raise OptionError('train.losses must be a mapping of loss name -> BasicSR loss options')
        return OrderedDict((str(k), dict(v)) for k, v in losses.items())
    repo = OrderedDict()
    for key, name in LEGACY_KEYS:
        if train_opt.get(key):
            opt = dict(train_opt[key])
            repo[name or LEGACY_PIXEL_NAMES.get(opt.get('type'), 'Pixel')] = opt
    if not repo:
        raise OptionError('train.losses: the loss repository is empty (give `losses` or BasicSR\'s pixel_opt/'
                         'perceptual_opt/gan_opt)')
    return repo


def _role(loss_type: str, opt: dict) -> str:
    role = opt.pop('role', None)
    if role is not None:
        if role not in ('pixel', 'perceptual', 'adversarial'):
            raise OptionError(f"train.losses: role '{role}' must be pixel, perceptual or adversarial")
        return role
    if loss_type in ADVERSARIAL_TYPES:
        return 'adversarial'
    return 'perceptual' if loss_type in PERCEPTUAL_TYPES else 'pixel'


def _build(name: str, opt: dict) -> nn.Module:
    loss_type = opt.get('type')
    if not registered(LOSS_REGISTRY, loss_type):
        raise OptionError(f"train.losses.{name}.type: unknown loss '{loss_type}'; "
                          f'registered: {registered_names(LOSS_REGISTRY)}')
    try:
        return build_loss(copy.deepcopy(opt))
    except (OSError, RuntimeError) as err:  # URLError is an OSError: pretrained backbones offline
        if loss_type in PERCEPTUAL_TYPES:
            raise MissingWeightsError(
                f'train.losses.{name}: the VGG weights for PerceptualLoss are missing and cannot be '
                f'downloaded; place vgg19-dcbb9e9d.pth at experiments/pretrained_models/ (relative to the '
                f'working directory) or in {torch.hub.get_dir()}/checkpoints/ ({type(err).__name__})') from err
        raise MissingWeightsError(
            f'train.losses.{name} ({loss_type}): could not be built ({type(err).__name__}: {err}); if it needs '
            f'pretrained weights, place them in {torch.hub.get_dir()}/checkpoints/') from err


class LossRepository:
    """Builds the named losses and reads/writes their weights in place."""

    def __init__(self, train_opt: dict, device: torch.device):
        self.entries: list[RepositoryEntry] = []
        for name, opt in repository_options(train_opt).items():
            opt = dict(opt)
            weight_attr = opt.pop('weight_attr', WEIGHT_ATTRIBUTES.get(opt.get('type'), 'loss_weight'))
            role = _role(opt.get('type'), opt)
            criterion = _build(name, opt).to(device)
            if not hasattr(criterion, weight_attr):
                raise OptionError(f"train.losses.{name}: {opt['type']} has no attribute '{weight_attr}' "
                                 f'(set weight_attr to the attribute that scales it)')
            self.entries.append(RepositoryEntry(name, opt['type'], criterion, weight_attr, role))
        adversarial = [e.name for e in self.entries if e.role == 'adversarial']
        if len(adversarial) > 1:
            raise OptionError(f'train.losses: at most one adversarial loss, got {adversarial}')

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def adversarial(self):
        return next((e for e in self.entries if e.role == 'adversarial'), None)

    def get_weights(self) -> 'OrderedDict[str, float]':
        return OrderedDict((e.name, float(getattr(e.criterion, e.weight_attr))) for e in self.entries)

    def set_weights(self, weights: dict) -> None:
        missing = [n for n in self.names if n not in weights]
        if missing:
            raise OptionError(f'weights for {missing} missing; repository is {self.names}')
        for e in self.entries:
            setattr(e.criterion, e.weight_attr, float(weights[e.name]))

    def set_initial_weights(self, weights) -> None:
        """`agent.initial_weights`: a list in repository order or a mapping by name."""
        if isinstance(weights, dict):
            unknown = sorted(set(weights) - set(self.names))
            if unknown or len(weights) != len(self.names):
                raise OptionError(f'agent.initial_weights: names {sorted(weights)} do not match the loss '
                                  f'repository {self.names}')
            values = [weights[n] for n in self.names]
        elif isinstance(weights, (list, tuple)):
            if len(weights) != len(self.names):
                raise OptionError(f'agent.initial_weights: {len(weights)} weights for {len(self.names)} losses '
                                  f'{self.names}')
            values = list(weights)
        else:
            raise OptionError(f'agent.initial_weights: expected a list or a mapping, got {weights!r}')
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
               or not math.isfinite(v)]
        if bad:
            raise OptionError(f'agent.initial_weights: weights must be finite and >= 0, got {bad}')
        self.set_weights(dict(zip(self.names, map(float, values))))

    def generator_loss(self, output: torch.Tensor, gt: torch.Tensor, net_d=None, targets: dict | None = None):
        """Total generator loss and the per-term log (BasicSR names for the classic three).

        `targets` may replace `gt` per role ('pixel', 'perceptual'), e.g. Real-ESRGAN's sharpened GT.
        """
        targets = targets or {}
        total = 0
        log = OrderedDict()
        for e in self.entries:
            if e.role == 'pixel':
                value = e.criterion(output, targets.get('pixel', gt))
                total = total + value
                log[f'l_g_{e.name}'] = value
            elif e.role == 'perceptual':
                percep, style = e.criterion(output, targets.get('perceptual', gt))
                for tag, value in (('', percep), ('_style', style)):
                    if value is not None:
                        total = total + value
                        log[f'l_g_{e.name}{tag}'] = value
            elif net_d is not None:
                value = e.criterion(net_d(output.contiguous()), True, is_disc=False)
                total = total + value
                log[f'l_g_{e.name}'] = value
        return total, log
