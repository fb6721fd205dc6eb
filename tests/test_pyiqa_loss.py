"""PyIQALoss: a pyiqa metric as a loss, direction-aware, its weight in the repository (offline metrics on CPU)."""

import pytest
import torch
from torch import nn

import lossagent_compat  # noqa: F401  (before basicsr)
import lossagent_losses  # noqa: F401
from lossagent_errors import OptionError
from lossagent_losses.pyiqa_loss import PyIQALoss
from lossagent_models.loss_repository import LossRepository, loss_spec


def photo(size=128, seed=0):
    """A real photograph's crop in [0, 1], NCHW (NIQE needs structure, not noise)."""
    from skimage import data as skdata

    img = torch.from_numpy(skdata.astronaut()[seed * 40 : seed * 40 + size, 100 : 100 + size].copy())
    return img.permute(2, 0, 1)[None].float() / 255


def test_lower_better_metric_is_minimised_and_gradients_reach_the_network():
    torch.manual_seed(0)
    loss = PyIQALoss('niqe', loss_weight=0.5)
    x = photo(96)
    noisy = (x + 0.08 * torch.randn_like(x)).clamp(0, 1)
    net = nn.Conv2d(3, 3, 3, padding=1)  # starts as identity plus a little noise: a network to train
    with torch.no_grad():
        net.weight.zero_()
        net.weight[range(3), range(3), 1, 1] = 1.0
        net.bias.zero_()
    value = loss(net(noisy))
    niqe = float(loss.metric(noisy))
    assert value.item() == pytest.approx(0.5 * niqe, rel=1e-4)  # lower better: + score
    value.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    optim = torch.optim.Adam(net.parameters(), lr=2e-3)
    before = niqe
    for _ in range(2):
        optim.zero_grad()
        loss(net(noisy)).backward()
        optim.step()
    assert float(loss.metric(net(noisy).detach().clamp(0, 1))) < before  # NIQE went down


def test_higher_better_metric_is_maximised():
    target = photo(96)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    loss = PyIQALoss('ssim', loss_weight=2.0)
    assert loss.full_reference and loss.sign == -1.0
    ssim = float(loss.metric(pred.detach(), target))
    value = loss(pred, target)
    assert value.item() == pytest.approx(-2.0 * ssim, rel=1e-4)  # higher better: - score
    value.backward()
    stepped = (pred - 0.05 * pred.grad.sign()).clamp(0, 1).detach()  # a descent step on the loss
    assert float(loss.metric(stepped, target)) > ssim
    with pytest.raises(ValueError, match='full-reference metric and needs the target'):
        loss(pred)


def test_weight_lives_in_the_repository():
    repo = LossRepository(
        {
            'losses': {
                'L1': {'type': 'L1Loss', 'loss_weight': 1.0},
                'NIQE': {'type': 'PyIQALoss', 'metric': 'niqe', 'loss_weight': 0.01},
            }
        },
        torch.device('cpu'),
    )
    assert repo.get_weights() == {'L1': 1.0, 'NIQE': 0.01}
    out, gt = photo(), photo(seed=1)
    _, terms = repo.generator_loss(out, gt)
    repo.set_weights({'L1': 1.0, 'NIQE': 0.02})  # what the agent does at a boundary
    _, doubled = repo.generator_loss(out, gt)
    assert doubled['l_g_NIQE'].item() == pytest.approx(2 * terms['l_g_NIQE'].item(), rel=1e-5)
    assert doubled['l_g_L1'].item() == pytest.approx(terms['l_g_L1'].item())


@pytest.mark.parametrize(
    'options, message',
    [
        ({'metric': 'niqee'}, r"^train\.losses\.Q\.metric: unknown pyiqa metric 'niqee' \(did you mean `niqe`\?\)"),
        ({'metric': 'niqe', 'metrc': 'x'}, r'^train\.losses\.Q\.metrc: unknown option \(did you mean `metric`\?\)'),
        ({}, r'^train\.losses\.Q\.metric: got None; expected a pyiqa metric name'),
        ({'metric': 'niqe', 'reduction': 'none'}, r"^train\.losses\.Q\.reduction: got 'none'"),
        (
            {'metric': 'niqe', 'metric_options': {'as_loss': False}},
            r'^train\.losses\.Q\.metric_options\.as_loss: set by',
        ),
        (
            {'metric': 'niqe', 'metric_options': {'test_y_chanel': True}},
            r'^train\.losses\.Q\.metric_options\.test_y_chanel: unknown option \(did you mean `test_y_channel`\?\)',
        ),
    ],
)
def test_options_are_checked_without_building(options, message):
    with pytest.raises(OptionError, match=message):
        loss_spec('Q', {'type': 'PyIQALoss', **options})


def test_metric_without_weights_names_the_entry_and_the_file(tmp_path):
    from lossagent_errors import MissingWeightsError

    missing = tmp_path / 'brisque_svm_weights.pth'
    with pytest.raises(
        MissingWeightsError,
        match=r"^train\.losses\.B: PyIQALoss\(brisque\): pyiqa metric 'brisque' "
        r'could not be created .*brisque_svm_weights\.pth',
    ):
        LossRepository(
            {
                'losses': {
                    'B': {
                        'type': 'PyIQALoss',
                        'metric': 'brisque',
                        'metric_options': {'pretrained_model_path': str(missing)},
                    }
                }
            },
            torch.device('cpu'),
        )
