"""Backbones: registered names, tiny-config forward shapes on CPU, published-config state_dict keys.

tests/data/arch_keys.json was generated from the AUTHORS' code (HAT hat/archs/hat_arch.py,
PromptIR net/model.py, MambaIR basicsr/archs/mambairv2light_arch.py) with the published configs:
key count, first/last keys with shapes, and a sha256 over every "key:shape" line in order. Equal
hashes mean the released checkpoints load into our classes with strict=True.
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch

import lossagent_compat  # noqa: F401  (before basicsr)
import lossagent_arch  # noqa: F401  (registers the archs)
from basicsr.utils.registry import ARCH_REGISTRY
from lossagent_arch.selective_scan import selective_scan, selective_scan_chunked, selective_scan_loop

EXPECTED = json.loads((Path(__file__).parent / 'data' / 'arch_keys.json').read_text())


def _summary(model, n=8):
    items = [f'{k}:{list(v.shape)}' for k, v in model.state_dict().items()]
    return items, hashlib.sha256('\n'.join(items).encode()).hexdigest()


@pytest.mark.parametrize('name', ['HAT', 'PromptIR', 'MambaIRv2'])
def test_published_config_state_dict_matches_authors(name):
    exp = EXPECTED[name]
    torch.manual_seed(0)
    model = ARCH_REGISTRY.get(name)(**exp['config'])
    items, digest = _summary(model)
    assert len(items) == exp['count']
    assert items[: len(exp['first'])] == exp['first']
    assert items[-len(exp['last']) :] == exp['last']
    assert digest == exp['sha256']
    assert sum(v.numel() for v in model.state_dict().values()) == exp['num_params']
    # a checkpoint saved BasicSR-style round-trips strictly
    model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, strict=True)


def test_names_do_not_collide_with_basicsr():
    for name in ('HAT', 'PromptIR', 'MambaIRv2'):
        assert ARCH_REGISTRY.get(name).__module__.startswith('lossagent_arch.')
    assert ARCH_REGISTRY.get('SwinIR').__module__.startswith('basicsr.')


def test_hat_tiny_forward_x4_any_size():
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('HAT')(
        upscale=4,
        window_size=8,
        compress_ratio=3,
        squeeze_factor=4,
        depths=[2],
        embed_dim=12,
        num_heads=[2],
        mlp_ratio=2,
        upsampler='pixelshuffle',
    ).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 12, 20))  # not a multiple of the window: padded inside, cropped after
    assert out.shape == (1, 3, 48, 80)
    assert torch.isfinite(out).all()


def test_promptir_tiny_forward_same_size_and_keys_follow_published_naming():
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('PromptIR')(
        dim=8,
        num_blocks=[1, 1, 1, 1],
        num_refinement_blocks=1,
        heads=[1, 2, 2, 4],
        prompt_dims=(8, 8, 16),
        prompt_sizes=(8, 4, 2),
    ).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 16, 24))
    assert out.shape == (2, 3, 16, 24)
    tiny_keys = {k.split('.')[0] for k in net.state_dict()}
    published = {
        line.split(':')[0].split('.')[0] for line in EXPECTED['PromptIR']['first'] + EXPECTED['PromptIR']['last']
    }
    assert published <= tiny_keys


@pytest.mark.parametrize('ffn_type', ['gated', 'conv'])
def test_mambairv2_tiny_forward_x4(ffn_type):
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('MambaIRv2')(
        upscale=4,
        embed_dim=12,
        d_state=4,
        depths=[1],
        num_heads=[2],
        window_size=8,
        inner_rank=8,
        num_tokens=8,
        mlp_ratio=1.0,
        ffn_type=ffn_type,
        eval_route='argmax',
    ).eval()
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        out, again = net(x), net(x)
    assert out.shape == (1, 3, 40, 56)
    assert torch.equal(out, again)  # argmax routing makes eval deterministic


def _scan_inputs(b=2, d=6, n=4, L=37, groups=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, L, generator=g)
    delta = torch.randn(b, d, L, generator=g) * 0.5
    A = -torch.exp(torch.randn(d, n, generator=g))
    B = torch.randn(b, groups, n, L, generator=g)
    C = torch.randn(b, groups, n, L, generator=g)
    D = torch.randn(d, generator=g)
    bias = torch.randn(d, generator=g) * 0.1
    return u, delta, A, B, C, D, bias


@pytest.mark.parametrize('groups,chunk', [(1, 8), (2, 5), (6, 64)])
def test_chunked_selective_scan_matches_naive_loop(groups, chunk):
    u, delta, A, B, C, D, bias = _scan_inputs(groups=groups)
    z = torch.randn_like(u)
    ref, ref_h = selective_scan_loop(
        u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True, return_last_state=True
    )
    got, got_h = selective_scan_chunked(
        u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True, return_last_state=True, chunk_size=chunk
    )
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_h, ref_h, rtol=1e-4, atol=1e-4)


def test_selective_scan_dispatch_on_cpu_and_gradients():
    u, delta, A, B, C, D, bias = _scan_inputs(L=16)
    u.requires_grad_(True)
    y = selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)
    torch.testing.assert_close(
        y, selective_scan_loop(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True), rtol=1e-4, atol=1e-4
    )
    y.sum().backward()
    assert torch.isfinite(u.grad).all()
