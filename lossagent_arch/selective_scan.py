"""Selective scan (the S6 recurrence of Mamba) for MambaIRv2: CUDA kernel if present, else pure PyTorch.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,     y_t = <C_t, h_t> + D * u_t

Same call signature as `mamba_ssm.ops.selective_scan_interface.selective_scan_fn`. The CUDA
kernel is used when `mamba_ssm` imports and the input is on CUDA; everywhere else
`selective_scan_chunked` runs: within a chunk of T steps the recurrence is unrolled into a masked
T x T decay matrix (one einsum instead of T Python steps), and the state is carried across chunks.
`selective_scan_loop` is the literal recurrence, kept as the numerical reference for tests.
"""

import torch
import torch.nn.functional as F

try:  # optional: the authors' CUDA kernel (pip package mamba-ssm); never required
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan
except Exception:  # ImportError, or a broken CUDA extension
    _cuda_selective_scan = None


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    """float32 copies, bias/softplus applied to delta, B/C expanded to (b, d, n, L)."""
    u, delta, A = u.float(), delta.float(), A.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    d = u.shape[1]

    def expand(M):
        M = M.float()
        if M.dim() == 3:  # (b, n, L): shared by all channels
            M = M.unsqueeze(1)
        g = M.shape[1]  # (b, g, n, L): each group serves d // g channels
        return M.repeat_interleave(d // g, dim=1) if g != d else M

    return u, delta, A, expand(B), expand(C)


def _finish(y, u, D, z, dtype):
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


def selective_scan_loop(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):
    """Step-by-step recurrence; slow, obviously correct (the test reference)."""
    dtype = u.dtype
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    b, d, L = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, :, :, t]
        ys.append((h * C[:, :, :, t]).sum(-1))
    y = _finish(torch.stack(ys, dim=-1), u, D, z, dtype)
    return (y, h) if return_last_state else y


def selective_scan_chunked(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False, chunk_size=32
):
    """Chunk-parallel form of the same recurrence (differentiable, any device)."""
    dtype = u.dtype
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    b, d, L = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for s in range(0, L, chunk_size):
        e = min(s + chunk_size, L)
        log_decay = delta[:, :, s:e, None] * A[None, :, None, :]  # b d T n, <= 0 since A < 0
        inp = (delta[:, :, s:e] * u[:, :, s:e])[..., None] * B[:, :, :, s:e].transpose(2, 3)  # b d T n
        cum = log_decay.cumsum(dim=2)
        # decay from step j to step t is exp(cum_t - cum_j) for j <= t; j > t is masked before exp,
        # so no positive exponent can overflow
        seg = cum[:, :, :, None, :] - cum[:, :, None, :, :]  # b d T(t) T(j) n
        causal = torch.ones(e - s, e - s, dtype=torch.bool, device=u.device).tril()
        seg = seg.masked_fill(~causal[None, None, :, :, None], float('-inf'))
        hs = torch.einsum('bdtjn,bdjn->bdtn', seg.exp(), inp) + cum.exp() * h[:, :, None, :]
        ys.append((hs * C[:, :, :, s:e].transpose(2, 3)).sum(-1))
        h = hs[:, :, -1]
    y = _finish(torch.cat(ys, dim=-1), u, D, z, dtype)
    return (y, h) if return_last_state else y


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False):
    """Dispatch: the CUDA kernel on CUDA tensors when installed, else the chunked PyTorch scan."""
    if _cuda_selective_scan is not None and u.is_cuda:
        return _cuda_selective_scan(
            u,
            delta,
            A,
            B,
            C,
            D,
            z=z,
            delta_bias=delta_bias,
            delta_softplus=delta_softplus,
            return_last_state=return_last_state,
        )
    return selective_scan_chunked(
        u,
        delta,
        A,
        B,
        C,
        D,
        z=z,
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
        return_last_state=return_last_state,
    )
