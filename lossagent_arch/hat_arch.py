"""HAT (Hybrid Attention Transformer, Chen et al., CVPR 2023) for classical SR, written for LossAgent.

Our own implementation of the authors' network (github.com/XPixelGroup/HAT, hat/archs/hat_arch.py).
Module and parameter names are kept identical to theirs so the released checkpoints
(e.g. `HAT-S_SRx4.pth`, key `params_ema`) load with `strict=True`; tests/arch_keys.json holds the
key list derived from the authors' code. HAT-S is this class with embed_dim 144, depths/heads 6x[6],
window 16, compress_ratio 24, squeeze_factor 24, conv_scale 0.01, overlap_ratio 0.5, mlp_ratio 2.

One deliberate difference: `forward` reflect-pads the input to a multiple of the window size and
crops the output (the authors do the same padding in their model's test step), so any LR size works.
"""

import math

import torch
import torch.nn as nn
from basicsr.archs.arch_util import to_2tuple, trunc_normal_
from basicsr.utils.registry import ARCH_REGISTRY

from lossagent_arch.padding import pad_to_multiple
from lossagent_arch.window_util import (
    PatchEmbed,
    init_transformer_weights,
    relative_position_index_oca,
    relative_position_index_sa,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


class DropPath(nn.Module):
    """Stochastic depth per sample (identity at eval; no parameters, so no effect on keys)."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x / keep * mask


class ChannelAttention(nn.Module):
    """RCAN-style squeeze-excitation; `attention.1` / `attention.3` are the two 1x1 convs."""

    def __init__(self, num_feat, squeeze_factor=16):
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, num_feat // squeeze_factor, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // squeeze_factor, num_feat, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel attention block, the convolutional branch running beside window attention."""

    def __init__(self, num_feat, compress_ratio=3, squeeze_factor=30):
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat // compress_ratio, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(num_feat // compress_ratio, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze_factor),
        )

    def forward(self, x):
        return self.cab(x)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _add_bias_and_softmax(attn, table, rpi, shape_q, shape_k, mask=None, num_heads=1):
    """attn (B, heads, nq, nk) + relative position bias (+ shifted-window mask), softmaxed."""
    bias = table[rpi.view(-1)].view(shape_q, shape_k, -1).permute(2, 0, 1).contiguous()
    attn = attn + bias.unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        attn = attn.view(-1, nw, num_heads, shape_q, shape_k) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, shape_q, shape_k)
    return attn.softmax(dim=-1)


class WindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention with a relative position bias table."""

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None):
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads)
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x, rpi, mask=None):
        b_, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = _add_bias_and_softmax(attn, self.relative_position_bias_table, rpi, n, n, mask, self.num_heads)
        return self.proj((attn @ v).transpose(1, 2).reshape(b_, n, c))


class HAB(nn.Module):
    """Hybrid attention block: window attention + scaled channel-attention conv branch, then MLP."""

    def __init__(
        self,
        dim,
        num_heads,
        window_size,
        shift_size,
        compress_ratio,
        squeeze_factor,
        conv_scale,
        mlp_ratio,
        qkv_bias=True,
        qk_scale=None,
        drop_path=0.0,
        norm_layer=nn.LayerNorm,
    ):
        super().__init__()
        self.window_size, self.shift_size, self.conv_scale = window_size, shift_size, conv_scale
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(dim, to_2tuple(window_size), num_heads, qkv_bias, qk_scale)
        self.conv_block = CAB(dim, compress_ratio, squeeze_factor)
        self.drop_path = DropPath(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, x_size, rpi_sa, attn_mask):
        h, w = x_size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        conv_x = self.conv_block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous().view(b, h * w, c)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = window_partition(x, self.window_size).view(-1, self.window_size * self.window_size, c)
        windows = self.attn(windows, rpi=rpi_sa, mask=attn_mask if self.shift_size > 0 else None)
        x = window_reverse(windows.view(-1, self.window_size, self.window_size, c), self.window_size, h, w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + self.drop_path(x.reshape(b, h * w, c)) + conv_x * self.conv_scale
        return x + self.drop_path(self.mlp(self.norm2(x)))


class OCAB(nn.Module):
    """Overlapping cross-attention: queries from ws windows attend to keys/values of enlarged windows."""

    def __init__(
        self,
        dim,
        window_size,
        overlap_ratio,
        num_heads,
        qkv_bias=True,
        qk_scale=None,
        mlp_ratio=2,
        norm_layer=nn.LayerNorm,
    ):
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.overlap_win_size = int(window_size * overlap_ratio) + window_size
        ows = self.overlap_win_size
        self.norm1 = norm_layer(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.unfold = nn.Unfold(kernel_size=(ows, ows), stride=window_size, padding=(ows - window_size) // 2)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((window_size + ows - 1) ** 2, num_heads))
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, x_size, rpi):
        h, w = x_size
        b, _, c = x.shape
        ws, ows, heads = self.window_size, self.overlap_win_size, self.num_heads
        shortcut = x
        qkv = self.qkv(self.norm1(x).view(b, h, w, c)).reshape(b, h, w, 3, c).permute(3, 0, 4, 1, 2)
        q = window_partition(qkv[0].permute(0, 2, 3, 1), ws).view(-1, ws * ws, c)
        kv = self.unfold(torch.cat((qkv[1], qkv[2]), dim=1))  # b, 2*c*ows*ows, nw
        nw = kv.shape[-1]
        # 'b (2 c oh ow) nw -> 2 (b nw) (oh ow) c' without einops
        kv = kv.view(b, 2, c, ows * ows, nw).permute(1, 0, 4, 3, 2).reshape(2, b * nw, ows * ows, c)
        d = c // heads
        q = q.reshape(-1, ws * ws, heads, d).permute(0, 2, 1, 3)
        k = kv[0].reshape(-1, ows * ows, heads, d).permute(0, 2, 1, 3)
        v = kv[1].reshape(-1, ows * ows, heads, d).permute(0, 2, 1, 3)
        attn = _add_bias_and_softmax(
            (q * self.scale) @ k.transpose(-2, -1), self.relative_position_bias_table, rpi, ws * ws, ows * ows
        )
        out = (attn @ v).transpose(1, 2).reshape(-1, ws, ws, c)
        x = self.proj(window_reverse(out, ws, h, w).view(b, h * w, c)) + shortcut
        return x + self.mlp(self.norm2(x))


class AttenBlocks(nn.Module):
    """`depth` HABs (alternating shift) followed by one OCAB; named as in the checkpoints."""

    def __init__(
        self,
        dim,
        depth,
        num_heads,
        window_size,
        compress_ratio,
        squeeze_factor,
        conv_scale,
        overlap_ratio,
        mlp_ratio,
        qkv_bias,
        qk_scale,
        drop_path,
        norm_layer,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                HAB(
                    dim,
                    num_heads,
                    window_size,
                    0 if i % 2 == 0 else window_size // 2,
                    compress_ratio,
                    squeeze_factor,
                    conv_scale,
                    mlp_ratio,
                    qkv_bias,
                    qk_scale,
                    drop_path[i],
                    norm_layer,
                )
                for i in range(depth)
            ]
        )
        self.overlap_attn = OCAB(dim, window_size, overlap_ratio, num_heads, qkv_bias, qk_scale, mlp_ratio, norm_layer)

    def forward(self, x, x_size, params):
        for blk in self.blocks:
            x = blk(x, x_size, params['rpi_sa'], params['attn_mask'])
        return self.overlap_attn(x, x_size, params['rpi_oca'])


class RHAG(nn.Module):
    """Residual hybrid attention group: blocks, a 3x3 conv on the image-shaped features, residual."""

    def __init__(self, dim, resi_connection='1conv', **block_kwargs):
        super().__init__()
        self.residual_group = AttenBlocks(dim=dim, **block_kwargs)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1) if resi_connection == '1conv' else nn.Identity()

    def forward(self, x, x_size, params):
        b, n, c = x.shape
        y = self.residual_group(x, x_size, params).transpose(1, 2).reshape(b, c, *x_size)
        return self.conv(y).flatten(2).transpose(1, 2) + x


class Upsample(nn.Sequential):
    """conv + PixelShuffle(2) per factor 2 (indices 0, 2, ... hold the convs), or one x3 step."""

    def __init__(self, scale, num_feat):
        layers = []
        if (scale & (scale - 1)) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f'HAT upscale {scale} is not supported (2^n or 3)')
        super().__init__(*layers)


@ARCH_REGISTRY.register()
class HAT(nn.Module):
    """Hybrid Attention Transformer; argument names as in the authors' option files.

    `img_size` is accepted for option-file compatibility but unused: nothing here depends on it.
    """

    def __init__(
        self,
        img_size=64,
        patch_size=1,
        in_chans=3,
        embed_dim=96,
        depths=(6, 6, 6, 6),
        num_heads=(6, 6, 6, 6),
        window_size=7,
        compress_ratio=3,
        squeeze_factor=30,
        conv_scale=0.01,
        overlap_ratio=0.5,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_path_rate=0.1,
        norm_layer=nn.LayerNorm,
        patch_norm=True,
        upscale=2,
        img_range=1.0,
        upsampler='',
        resi_connection='1conv',
        **kwargs,
    ):
        super().__init__()
        if patch_size != 1:
            raise ValueError('HAT: patch_size must be 1 (as in all published configs)')
        if upsampler != 'pixelshuffle':
            raise ValueError(f"HAT: upsampler '{upsampler}' not supported; the SR configs use 'pixelshuffle'")
        num_feat = 64
        self.window_size, self.shift_size, self.overlap_ratio = window_size, window_size // 2, overlap_ratio
        self.img_range, self.upscale, self.upsampler = img_range, upscale, upsampler
        # a plain attribute, not a buffer: the checkpoints do not contain it
        self.mean = (
            torch.Tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1) if in_chans == 3 else torch.zeros(1, 1, 1, 1)
        )
        self.register_buffer('relative_position_index_SA', relative_position_index_sa(window_size))
        self.register_buffer('relative_position_index_OCA', relative_position_index_oca(window_size, overlap_ratio))

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, norm_layer if patch_norm else None)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths))]
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            self.layers.append(
                RHAG(
                    embed_dim,
                    resi_connection,
                    depth=depth,
                    num_heads=num_heads[i],
                    window_size=window_size,
                    compress_ratio=compress_ratio,
                    squeeze_factor=squeeze_factor,
                    conv_scale=conv_scale,
                    overlap_ratio=overlap_ratio,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                    norm_layer=norm_layer,
                )
            )
        self.norm = norm_layer(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1) if resi_connection == '1conv' else nn.Identity()
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True))
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        self.apply(init_transformer_weights)

    def forward_features(self, x):
        x_size = (x.shape[2], x.shape[3])
        params = {
            'attn_mask': shifted_window_mask(*x_size, self.window_size, self.shift_size).to(x.device, x.dtype),
            'rpi_sa': self.relative_position_index_SA,
            'rpi_oca': self.relative_position_index_OCA,
        }
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x, x_size, params)
        x = self.norm(x)
        return x.transpose(1, 2).reshape(x.shape[0], -1, *x_size)

    def forward(self, x):
        x, (h, w) = pad_to_multiple(x, self.window_size)
        self.mean = self.mean.type_as(x)
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        x = x / self.img_range + self.mean
        return x[..., : h * self.upscale, : w * self.upscale]
