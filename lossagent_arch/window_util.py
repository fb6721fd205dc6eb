"""Pieces shared by the window-attention backbones (HAT, MambaIRv2): windows, masks, patch embedding.

Not an `*_arch.py` file, so the package does not auto-import it; the arch files import it.
The index/mask formulas follow SwinIR/HAT exactly: checkpoints store `relative_position_index_*`
buffers, so our buffers must hold the very same integers for a strict load to give the same network.
"""

import torch
from torch import nn

from basicsr.archs.arch_util import trunc_normal_


def window_partition(x, window_size):
    """(b, h, w, c) -> (b * num_windows, window_size, window_size, c)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, c)


def window_reverse(windows, window_size, h, w):
    """Inverse of `window_partition`: (b * num_windows, ws, ws, c) -> (b, h, w, c)."""
    b = int(windows.shape[0] / (h * w / window_size / window_size))
    x = windows.view(b, h // window_size, w // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def relative_position_index_sa(window_size):
    """Index into a (2ws-1)^2 bias table for every (query, key) pair of one window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing='ij'))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window_size - 1
    rel[:, :, 1] += window_size - 1
    rel[:, :, 0] *= 2 * window_size - 1
    return rel.sum(-1)


def relative_position_index_oca(window_size, overlap_ratio):
    """HAT's overlapping cross-attention: queries in a ws window, keys in the enlarged window."""
    ws_ext = window_size + int(overlap_ratio * window_size)
    ori = torch.flatten(
        torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing='ij')), 1
    )
    ext = torch.flatten(torch.stack(torch.meshgrid(torch.arange(ws_ext), torch.arange(ws_ext), indexing='ij')), 1)
    rel = (ext[:, None, :] - ori[:, :, None]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window_size - ws_ext + 1
    rel[:, :, 1] += window_size - ws_ext + 1
    rel[:, :, 0] *= window_size + ws_ext - 1
    return rel.sum(-1)


def shifted_window_mask(h, w, window_size, shift_size):
    """(num_windows, ws*ws, ws*ws) mask, -100 between tokens from different regions after the roll."""
    img_mask = torch.zeros((1, h, w, 1))
    slices = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    cnt = 0
    for hs in slices:
        for wsl in slices:
            img_mask[:, hs, wsl, :] = cnt
            cnt += 1
    mask_windows = window_partition(img_mask, window_size).view(-1, window_size * window_size)
    mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class PatchEmbed(nn.Module):
    """Flattens (b, c, h, w) to tokens and applies the optional norm (key `patch_embed.norm.*`)."""

    def __init__(self, embed_dim, norm_layer=None):
        super().__init__()
        self.norm = norm_layer(embed_dim) if norm_layer is not None else None

    def forward(self, x):
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


def init_transformer_weights(m):
    """The Swin-family initialisation: truncated-normal linears, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0)
        nn.init.constant_(m.weight, 1.0)
