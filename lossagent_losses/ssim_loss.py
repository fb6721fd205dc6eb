"""1 - SSIM as a loss: a structural term that needs no pretrained network (offline demo)."""

import torch
import torch.nn.functional as F
from torch import nn

from basicsr.utils.registry import LOSS_REGISTRY


def _gaussian_window(size: int, sigma: float, channels: int) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


@LOSS_REGISTRY.register()
class SSIMLoss(nn.Module):
    """`loss_weight * (1 - SSIM(pred, target))`, images in [0, 1], Gaussian window as in Wang et al."""

    def __init__(self, loss_weight=1.0, window_size=11, sigma=1.5, data_range=1.0):
        super().__init__()
        self.loss_weight = loss_weight
        self.window_size = window_size
        self.c1 = (0.01 * data_range) ** 2
        self.c2 = (0.03 * data_range) ** 2
        self.register_buffer('window', _gaussian_window(window_size, sigma, 3), persistent=False)

    def ssim(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        window = (
            self.window if self.window.shape[0] == channels else _gaussian_window(self.window_size, 1.5, channels).to(x)
        )
        window = window.to(x.dtype)
        blur = lambda t: F.conv2d(t, window, groups=channels)  # noqa: E731  valid conv, as in the reference code
        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x**2
        var_y = blur(y * y) - mu_y**2
        cov = blur(x * y) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + self.c1) * (2 * cov + self.c2)) / (
            (mu_x**2 + mu_y**2 + self.c1) * (var_x + var_y + self.c2)
        )
        return ssim_map.mean()

    def forward(self, pred, target, **kwargs):
        return self.loss_weight * (1 - self.ssim(pred, target))
