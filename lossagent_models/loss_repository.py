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
import inspect
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from basicsr.losses import build_loss
from basicsr.utils.registry import LOSS_REGISTRY

from agent.options import as_number
from agent.weights import check_weight
from lossagent_compat import lookup, registered, unknown_name
from lossagent_errors import MissingWeightsError, OptionError, UserError, unknown_key
from lossagent_options import initial_weights_option

ADVERSARIAL_TYPES = {'GANLoss', 'MultiScaleGANLoss'}
PERCEPTUAL_TYPES = {'PerceptualLoss'}
# The attribute holding a loss' weight, for losses that do not call it `loss_weight`.
WEIGHT_ATTRIBUTES = {'PerceptualLoss': 'perceptual_weight'}
LEGACY_KEYS = (('pixel_opt', None), ('perceptual_opt', 'Perceptual'), ('gan_opt', 'GAN'))
LEGACY_PIXEL_NAMES = {'L1Loss': 'L1', 'MSELoss': 'MSE', 'CharbonnierLoss': 'Charbonnier'}
ROLES = ('pixel', 'perceptual', 'adversarial')


@dataclass
class RepositoryEntry:
    name: str
    type: str
    criterion: nn.Module
    weight_attr: str
    role: str  # 'pixel' (loss(out, gt)), 'perceptual' ((percep, style)), 'adversarial'


@dataclass(frozen=True)
class LossSpec:
    """One entry of `train.losses`, validated: what `build_loss` gets, and ours."""

    name: str
    type: str
    options: dict  # for BasicSR's build_loss (our keys removed, numbers as numbers)
    weight_attr: str
    role: str
    weight: float  # the initial weight (the option, else the loss class' default)


def repository_options(train_opt: dict) -> OrderedDict[str, dict]:
    """The `train.losses` mapping, or one made from BasicSR's SRGANModel keys."""
    if train_opt.get('losses'):
        if any(train_opt.get(key) for key, _ in LEGACY_KEYS):
            raise OptionError('train: give either `losses` or pixel_opt/perceptual_opt/gan_opt, not both')
        losses = train_opt['losses']
        if not isinstance(losses, dict) or not all(isinstance(v, dict) for v in losses.values()):
            raise OptionError('train.losses must be a mapping of loss name -> BasicSR loss options')
        return OrderedDict((str(k), dict(v)) for k, v in losses.items())
    repo = OrderedDict()
    for key, name in LEGACY_KEYS:
        if train_opt.get(key):
            opt = dict(train_opt[key])
            repo[name or LEGACY_PIXEL_NAMES.get(opt.get('type'), 'Pixel')] = opt
    if not repo:
        raise OptionError(
            "train.losses: the loss repository is empty (give `losses` or BasicSR's pixel_opt/perceptual_opt/gan_opt)"
        )
    return repo


def loss_spec(name: str, opt: dict) -> LossSpec:
    """Validate one loss without building it: its type, our keys, its constructor's keywords, its weight."""
    key = f'train.losses.{name}'
    opt = dict(opt)
    loss_type = opt.get('type')
    if not registered(LOSS_REGISTRY, loss_type):
        raise unknown_name(f'{key}.type', 'loss', loss_type, LOSS_REGISTRY)
    weight_attr = opt.pop('weight_attr', WEIGHT_ATTRIBUTES.get(loss_type, 'loss_weight'))
    role = opt.pop('role', None)
    if role is None:
        role = (
            'adversarial'
            if loss_type in ADVERSARIAL_TYPES
            else 'perceptual'
            if loss_type in PERCEPTUAL_TYPES
            else 'pixel'
        )
    elif role not in ROLES:
        raise OptionError(f'{key}.role: got {role!r}; expected one of {list(ROLES)}')
    loss_class = lookup(LOSS_REGISTRY, loss_type)
    params = inspect.signature(loss_class.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [p for p in params if p != 'self'] + ['type', 'weight_attr', 'role']
        for option in opt:
            if option not in known:
                raise unknown_key(key, option, known)
        if weight_attr not in params:
            raise OptionError(
                f"{key}.weight_attr: {loss_type} takes no '{weight_attr}' (set weight_attr to "
                f'the keyword that scales it)'
            )
    for option, value in opt.items():
        if option.endswith('_weight') and not isinstance(value, dict):
            number = as_number(value)
            if number is None:
                raise OptionError(f'{key}.{option}: got {value!r}; expected a number')
            opt[option] = number
    own_check = getattr(loss_class, 'check_options', None)  # a loss of ours that checks more without building
    if callable(own_check):
        own_check(key, {k: v for k, v in opt.items() if k != 'type'})
    default = params[weight_attr].default if weight_attr in params else 1.0
    weight = opt.get(weight_attr, default)
    # where a loss' weight enters: one weight may be zero (a repository of zeros is the agent's check)
    problem = (
        check_weight(name, weight)
        if as_number(weight) is not None
        else f'weight of {name} is not a number ({weight!r})'
    )
    if problem:
        raise OptionError(f'{key}.{weight_attr}: {problem}')
    return LossSpec(name, loss_type, opt, weight_attr, role, float(weight))


def repository_specs(train_opt: dict) -> list[LossSpec]:
    """`train.losses` (or SRGANModel's keys) validated, nothing built."""
    specs = [loss_spec(name, opt) for name, opt in repository_options(train_opt).items()]
    adversarial = [s.name for s in specs if s.role == 'adversarial']
    if len(adversarial) > 1:
        raise OptionError(f'train.losses: at most one adversarial loss, got {adversarial}')
    return specs


def _build(spec: LossSpec) -> nn.Module:
    try:
        return build_loss(copy.deepcopy(spec.options))
    except UserError as err:  # our losses name the file to place; say which entry needs it
        raise type(err)(f'train.losses.{spec.name}: {err}') from err
    except (OSError, RuntimeError) as err:  # URLError is an OSError: pretrained backbones offline
        if spec.type in PERCEPTUAL_TYPES:
            raise MissingWeightsError(
                f'train.losses.{spec.name}: the VGG weights for PerceptualLoss are missing and cannot be '
                f'downloaded; place vgg19-dcbb9e9d.pth at experiments/pretrained_models/ (relative to the '
                f'working directory) or in {torch.hub.get_dir()}/checkpoints/ ({type(err).__name__})'
            ) from err
        raise MissingWeightsError(
            f'train.losses.{spec.name} ({spec.type}): could not be built ({type(err).__name__}: {err}); if it '
            f'needs pretrained weights, place them in {torch.hub.get_dir()}/checkpoints/'
        ) from err


class LossRepository:
    """Builds the named losses and reads/writes their weights in place."""

    def __init__(self, train_opt: dict, device: torch.device, specs: list[LossSpec] | None = None):
        """`specs`: `train.losses` as the start-up check parsed them (training_specs.py); without them
        `train_opt` is parsed here (tests, scripts)."""
        self.entries: list[RepositoryEntry] = []
        for spec in specs if specs is not None else repository_specs(train_opt):
            criterion = _build(spec).to(device)
            if not hasattr(criterion, spec.weight_attr):
                raise OptionError(
                    f"train.losses.{spec.name}: {spec.type} has no attribute '{spec.weight_attr}' "
                    f'(set weight_attr to the attribute that scales it)'
                )
            self.entries.append(RepositoryEntry(spec.name, spec.type, criterion, spec.weight_attr, spec.role))

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def adversarial(self):
        return next((e for e in self.entries if e.role == 'adversarial'), None)

    def get_weights(self) -> OrderedDict[str, float]:
        return OrderedDict((e.name, float(getattr(e.criterion, e.weight_attr))) for e in self.entries)

    def set_weights(self, weights: dict) -> None:
        """Weights checked where they entered (`check_weights`): agent.initial_weights by the option
        check, a decision by `StageRecord.record_decision`, a resumed state by the stage hook."""
        for e in self.entries:
            setattr(e.criterion, e.weight_attr, float(weights[e.name]))

    def set_initial_weights(self, weights) -> None:
        """`agent.initial_weights`: a list in repository order or a mapping by name."""
        self.set_weights(initial_weights_option(weights, self.names))

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
