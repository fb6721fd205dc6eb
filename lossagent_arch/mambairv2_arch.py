"""MambaIRv2 (Guo et al., CVPR 2025, "Attentive State Space Restoration"), written for LossAgent.

Our own implementation of the authors' networks (github.com/csguoh/MambaIR,
basicsr/archs/mambairv2light_arch.py and mambairv2_arch.py), with the same module and parameter
names so their checkpoints load with `strict=True` (tests/arch_keys.json, derived from their code).
The authors' package installs a module named `basicsr` that shadows the real one, so it is never
imported here. The light and full variants differ only in the FFN: `ffn_type: gated` (light,
GatedMLP, the default) or `conv` (full, ConvFFN).

Published light x4 config: embed_dim 48, d_state 8, depths [5,5,5,5], num_heads [4,4,4,4],
window 16, inner_rank 32, num_tokens 64, convffn_kernel_size 5, mlp_ratio 1.0,
upsampler pixelshuffledirect.

Inference routing: the authors draw the token route with `gumbel_softmax` even in eval mode, so two
runs on the same image differ slightly. `eval_route: gumbel` keeps that; `argmax` makes eval
deterministic (useful when comparing methods with NR metrics; not the authors' exact numbers).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from basicsr.archs.arch_util import to_2tuple, trunc_normal_
from basicsr.utils.registry import ARCH_REGISTRY

from lossagent_arch.selective_scan import selective_scan
from lossagent_arch.window_util import (
    PatchEmbed,
    init_transformer_weights,
    relative_position_index_sa,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


class Gate(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, kernel_size=5, stride=1, padding=2, groups=dim)

    def forward(self, x, h, w):
        x1, x2 = x.chunk(2, dim=-1)
        b, n, c = x2.shape
        x2 = self.conv(self.norm(x2).transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return x1 * x2


class GatedMLP(nn.Module):
    """Light variant's FFN: fc1 -> GELU -> spatial gate (half the channels) -> fc2."""

    def __init__(self, in_features, hidden_features, out_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.sg = Gate(hidden_features // 2)
        self.fc2 = nn.Linear(hidden_features // 2, out_features)

    def forward(self, x, x_size):
        return self.fc2(self.sg(self.act(self.fc1(x)), *x_size))


class dwconv(nn.Module):  # lower-case class name kept from the authors' code (no effect on keys)
    def __init__(self, hidden_features, kernel_size=5):
        super().__init__()
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(hidden_features, hidden_features, kernel_size, 1, (kernel_size - 1) // 2, groups=hidden_features),
            nn.GELU(),
        )

    def forward(self, x, x_size):
        b, n, c = x.shape
        return self.depthwise_conv(x.transpose(1, 2).reshape(b, c, *x_size)).flatten(2).transpose(1, 2)


class ConvFFN(nn.Module):
    """Full variant's FFN: fc1 -> GELU -> + depthwise conv -> fc2."""

    def __init__(self, in_features, hidden_features, kernel_size=5):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.dwconv = dwconv(hidden_features, kernel_size)
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x, x_size):
        x = self.act(self.fc1(x))
        return self.fc2(x + self.dwconv(x, x_size))


class WindowAttention(nn.Module):
    """Window attention on a precomputed qkv (the layer's `wqkv` projects once)."""

    def __init__(self, dim, window_size, num_heads):
        super().__init__()
        self.window_size, self.num_heads = window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads)
        )
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, qkv, rpi, mask=None):
        b_, n, c3 = qkv.shape
        c = c3 // 3
        q, k, v = qkv.reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(b_ // nw, nw, self.num_heads, n, n) + mask[None, :, None]).view(-1, self.num_heads, n, n)
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b_, n, c))


class Selective_Scan(nn.Module):
    """One-direction selective scan; parameter layout (K=1 leading dim) as in the checkpoints."""

    def __init__(self, d_model, d_state=16, expand=1.0, dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4):
        super().__init__()
        self.d_state = d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16)
        x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.x_proj_weight = nn.Parameter(x_proj.weight.detach().clone()[None])  # (1, rank + 2n, d)
        std = self.dt_rank**-0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(1, self.d_inner, self.dt_rank).uniform_(-std, std))
        # dt bias = softplus^-1 of a log-uniform dt in [dt_min, dt_max] (Mamba's initialisation)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter((dt + torch.log(-torch.expm1(-dt)))[None])
        self.A_logs = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1)
        )  # (d, n): S4D-real A = -[1..n]
        self.Ds = nn.Parameter(torch.ones(self.d_inner))

    def forward(self, x, prompt):
        """x (b, L, d), prompt (b, L, n) added to C (the paper's attentive state-space equation)."""
        b, L, d = x.shape
        xs = x.transpose(1, 2).contiguous()  # b d L
        x_dbl = torch.einsum('bdl,cd->bcl', xs, self.x_proj_weight[0])
        dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        dts = torch.einsum('brl,dr->bdl', dts, self.dt_projs_weight[0])
        Cs = Cs.float() + prompt.transpose(1, 2).float()
        y = selective_scan(
            xs.float(),
            dts.contiguous().float(),
            -torch.exp(self.A_logs.float()),
            Bs.float()[:, None].contiguous(),
            Cs[:, None].contiguous(),
            self.Ds.float(),
            delta_bias=self.dt_projs_bias.float().view(-1),
            delta_softplus=True,
        )
        return y.transpose(1, 2)


class ASSM(nn.Module):
    """Attentive state-space module: route tokens to prompts, sort by route, scan, unsort."""

    def __init__(self, dim, d_state, num_tokens=64, inner_rank=128, mlp_ratio=2.0, eval_route='gumbel'):
        super().__init__()
        self.d_state, self.eval_route = d_state, eval_route
        hidden = int(dim * mlp_ratio)
        self.selectiveScan = Selective_Scan(d_model=hidden, d_state=d_state, expand=1)
        self.out_norm = nn.LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, dim, bias=True)
        self.in_proj = nn.Sequential(nn.Conv2d(dim, hidden, 1, 1, 0))
        self.CPE = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden))
        self.embeddingB = nn.Embedding(num_tokens, inner_rank)
        self.embeddingB.weight.data.uniform_(-1 / num_tokens, 1 / num_tokens)
        self.route = nn.Sequential(
            nn.Linear(dim, dim // 3), nn.GELU(), nn.Linear(dim // 3, num_tokens), nn.LogSoftmax(dim=-1)
        )

    def forward(self, x, x_size, token):
        b, n, c = x.shape
        full_embedding = self.embeddingB.weight @ token.weight  # num_tokens x d_state
        logits = self.route(x)
        if self.training or self.eval_route == 'gumbel':
            policy = F.gumbel_softmax(logits, hard=True, dim=-1)
        else:
            policy = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        prompt = torch.matmul(policy, full_embedding).view(b, n, self.d_state)
        order = torch.sort(policy.detach().argmax(dim=-1), dim=-1, stable=False)[1]  # b, n
        inverse = torch.argsort(order, dim=-1)
        x = self.in_proj(x.transpose(1, 2).reshape(b, c, *x_size))
        x = x * torch.sigmoid(self.CPE(x))
        x = x.flatten(2).transpose(1, 2)  # b, n, hidden
        x = torch.gather(x, 1, order[..., None].expand_as(x))
        y = self.out_proj(self.out_norm(self.selectiveScan(x, prompt)))
        return torch.gather(y, 1, inverse[..., None].expand_as(y))


class AttentiveLayer(nn.Module):
    """Window attention + FFN, then attentive state space + FFN, each with a learned layer scale."""

    def __init__(
        self,
        dim,
        d_state,
        num_heads,
        window_size,
        shift_size,
        inner_rank,
        num_tokens,
        convffn_kernel_size,
        mlp_ratio,
        ffn_type='gated',
        eval_route='gumbel',
    ):
        super().__init__()
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.LayerNorm(dim) for _ in range(4))
        self.scale1 = nn.Parameter(1e-4 * torch.ones(dim))
        self.scale2 = nn.Parameter(1e-4 * torch.ones(dim))
        self.wqkv = nn.Linear(dim, 3 * dim, bias=True)
        self.win_mhsa = WindowAttention(dim, to_2tuple(window_size), num_heads)
        self.assm = ASSM(dim, d_state, num_tokens, inner_rank, mlp_ratio, eval_route)
        hidden = int(dim * mlp_ratio)
        if ffn_type == 'gated':
            self.convffn1, self.convffn2 = GatedMLP(dim, hidden, dim), GatedMLP(dim, hidden, dim)
        elif ffn_type == 'conv':
            self.convffn1 = ConvFFN(dim, hidden, convffn_kernel_size)
            self.convffn2 = ConvFFN(dim, hidden, convffn_kernel_size)
        else:
            raise ValueError(f"MambaIRv2: ffn_type must be 'gated' (light) or 'conv' (full), got '{ffn_type}'")
        self.embeddingA = nn.Embedding(inner_rank, d_state)
        self.embeddingA.weight.data.uniform_(-1 / inner_rank, 1 / inner_rank)

    def forward(self, x, x_size, params):
        h, w = x_size
        b, n, c = x.shape
        ws = self.window_size
        shortcut = x
        qkv = self.wqkv(self.norm1(x)).reshape(b, h, w, 3 * c)
        if self.shift_size > 0:
            qkv = torch.roll(qkv, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = self.win_mhsa(
            window_partition(qkv, ws).view(-1, ws * ws, 3 * c),
            rpi=params['rpi_sa'],
            mask=params['attn_mask'] if self.shift_size > 0 else None,
        )
        attn_x = window_reverse(windows.view(-1, ws, ws, c), ws, h, w)
        if self.shift_size > 0:
            attn_x = torch.roll(attn_x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x_win = attn_x.reshape(b, n, c) + shortcut
        x_win = self.convffn1(self.norm2(x_win), x_size) + x_win
        x = shortcut * self.scale1 + x_win

        shortcut = x
        x_aca = self.assm(self.norm3(x), x_size, self.embeddingA) + x
        x = x_aca + self.convffn2(self.norm4(x_aca), x_size)
        return shortcut * self.scale2 + x


class BasicBlock(nn.Module):
    def __init__(self, depth, window_size, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                AttentiveLayer(
                    window_size=window_size, shift_size=0 if i % 2 == 0 else window_size // 2, **layer_kwargs
                )
                for i in range(depth)
            ]
        )

    def forward(self, x, x_size, params):
        for layer in self.layers:
            x = layer(x, x_size, params)
        return x


class ASSB(nn.Module):
    """Attentive state space group: layers, a 3x3 conv on image-shaped features, residual."""

    def __init__(self, dim, resi_connection='1conv', **block_kwargs):
        super().__init__()
        self.residual_group = BasicBlock(dim=dim, **block_kwargs)
        if resi_connection != '1conv':
            raise ValueError("MambaIRv2: only resi_connection '1conv' (all published configs) is supported")
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x, x_size, params):
        b, n, c = x.shape
        y = self.residual_group(x, x_size, params).transpose(1, 2).reshape(b, c, *x_size)
        return self.conv(y).flatten(2).transpose(1, 2) + x


@ARCH_REGISTRY.register()
class MambaIRv2(nn.Module):
    """MambaIRv2 for SR; defaults are the light x4 config. `img_size` is accepted and unused."""

    def __init__(
        self,
        img_size=64,
        patch_size=1,
        in_chans=3,
        embed_dim=48,
        d_state=8,
        depths=(5, 5, 5, 5),
        num_heads=(4, 4, 4, 4),
        window_size=16,
        inner_rank=32,
        num_tokens=64,
        convffn_kernel_size=5,
        mlp_ratio=1.0,
        patch_norm=True,
        upscale=4,
        img_range=1.0,
        upsampler='pixelshuffledirect',
        resi_connection='1conv',
        ffn_type='gated',
        eval_route='gumbel',
        **kwargs,
    ):
        super().__init__()
        if eval_route not in ('gumbel', 'argmax'):
            raise ValueError(f"MambaIRv2: eval_route must be 'gumbel' or 'argmax', got '{eval_route}'")
        num_feat = 64
        self.window_size, self.img_range, self.upscale, self.upsampler = window_size, img_range, upscale, upsampler
        self.mean = (
            torch.Tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1) if in_chans == 3 else torch.zeros(1, 1, 1, 1)
        )
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, nn.LayerNorm if patch_norm else None)
        self.register_buffer('relative_position_index_SA', relative_position_index_sa(window_size))
        self.layers = nn.ModuleList(
            [
                ASSB(
                    embed_dim,
                    resi_connection,
                    depth=depths[i],
                    window_size=window_size,
                    d_state=d_state,
                    num_heads=num_heads[i],
                    inner_rank=inner_rank,
                    num_tokens=num_tokens,
                    convffn_kernel_size=convffn_kernel_size,
                    mlp_ratio=mlp_ratio,
                    ffn_type=ffn_type,
                    eval_route=eval_route,
                )
                for i in range(len(depths))
            ]
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        if upsampler == 'pixelshuffledirect':  # light: one conv + PixelShuffle(scale)
            self.upsample = nn.Sequential(
                nn.Conv2d(embed_dim, upscale**2 * in_chans, 3, 1, 1), nn.PixelShuffle(upscale)
            )
        elif upsampler == 'pixelshuffle':  # full: conv, (conv + PixelShuffle(2)) per factor 2, conv
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
            steps = []
            for _ in range(int(math.log2(upscale))):
                steps += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
            if 2 ** int(math.log2(upscale)) != upscale:
                raise ValueError(f'MambaIRv2: pixelshuffle upscale must be a power of 2, got {upscale}')
            self.upsample = nn.Sequential(*steps)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        else:
            raise ValueError(f"MambaIRv2: upsampler '{upsampler}' not supported (pixelshuffledirect, pixelshuffle)")
        self.apply(init_transformer_weights)

    def forward_features(self, x, params):
        x_size = (x.shape[2], x.shape[3])
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x, x_size, params)
        x = self.norm(x)
        return x.transpose(1, 2).reshape(x.shape[0], -1, *x_size)

    def forward(self, x):
        # mirror-pad to the window size as the authors do (flip-concat, so any size works)
        h_ori, w_ori = x.shape[-2:]
        h = -(-h_ori // self.window_size) * self.window_size
        w = -(-w_ori // self.window_size) * self.window_size
        x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :h, :]
        x = torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, :w]
        self.mean = self.mean.type_as(x)
        x = (x - self.mean) * self.img_range
        params = {
            'attn_mask': shifted_window_mask(h, w, self.window_size, self.window_size // 2).to(x),
            'rpi_sa': self.relative_position_index_SA,
        }
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x, params)) + x
        if self.upsampler == 'pixelshuffledirect':
            x = self.upsample(x)
        else:
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        x = x / self.img_range + self.mean
        return x[..., : h_ori * self.upscale, : w_ori * self.upscale]
