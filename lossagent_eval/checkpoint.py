"""Load a network checkpoint with BasicSR's conventions, failing with one line that names the option.

BasicSR saves `{'params': ..., 'params_ema': ...}`; DataParallel/DDP checkpoints prefix keys with
`module.`; PromptIR's Lightning file keeps weights under `state_dict` with a `net.` prefix. SwinIR
stores `attn_mask` buffers whose shape depends on the training `img_size`; they are recomputed
from the input anyway, so they are dropped (the rest still loads strictly).
"""

import os

import torch

from lossagent_errors import CheckpointError

IGNORED_SUFFIXES = ('attn_mask',)


def load_checkpoint(net, path, param_key='params', strict=True, strip_prefix=None, owner='pretrain_network_g'):
    """Load `path` into `net`; `owner` is the option key that holds the path (for error messages)."""
    if not path or not os.path.isfile(path):
        raise CheckpointError(f'{owner}: checkpoint {path!r} not found; place the file there or fix the option')
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    if param_key:
        if param_key not in ckpt:
            if param_key == 'params_ema' and 'params' in ckpt:
                param_key = 'params'  # BasicSR's own fallback: models trained without EMA
            else:
                raise CheckpointError(
                    f"{owner}: {path} has no key '{param_key}' (keys: {sorted(ckpt)[:8]}); set the method's param_key_g"
                )
        ckpt = ckpt[param_key]
    state = {}
    for key, value in ckpt.items():
        if key.startswith('module.'):
            key = key[len('module.') :]
        if strip_prefix and key.startswith(strip_prefix):
            key = key[len(strip_prefix) :]
        if not key.endswith(IGNORED_SUFFIXES):
            state[key] = value
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches: torch's message spans many lines
        first = next((line.strip() for line in str(err).splitlines() if 'size mismatch' in line), str(err)[:200])
        raise CheckpointError(f'{owner}: {path} does not fit network_g ({first})') from err
    missing = [k for k in result.missing_keys if not k.endswith(IGNORED_SUFFIXES)]
    if strict and (missing or result.unexpected_keys):
        raise CheckpointError(
            f'{owner}: {path} does not match the network (missing {missing[:5]}, '
            f'unexpected {result.unexpected_keys[:5]}); check network_g or strict_load_g'
        )
    return net
