"""Rewrite a released checkpoint as BasicSR's `{'params': state_dict}`, so `path.pretrain_network_g`
can load it for training (BasicSR's loader only knows a top-level key and the `module.` prefix).

PromptIR's release is a PyTorch Lightning file: weights under `state_dict`, keys prefixed `net.`:

    python scripts/convert_checkpoint.py --input experiments/pretrained_models/promptir_model.ckpt \
        --param-key state_dict --strip-prefix net. --output experiments/pretrained_models/PromptIR_allinone.pth

Keys without the prefix (e.g. a Lightning module's loss buffers) are dropped and listed.
"""

import argparse
import sys
from pathlib import Path

import torch


def convert(ckpt: dict, param_key: str = None, strip_prefix: str = None) -> tuple[dict, list]:
    if param_key:
        if param_key not in ckpt:
            raise KeyError(f"--param-key: '{param_key}' not in the checkpoint (keys: {sorted(ckpt)[:8]})")
        ckpt = ckpt[param_key]
    params, dropped = {}, []
    for key, value in ckpt.items():
        if key.startswith('module.'):
            key = key[len('module.') :]
        if strip_prefix:
            if not key.startswith(strip_prefix):
                dropped.append(key)
                continue
            key = key[len(strip_prefix) :]
        params[key] = value
    return params, dropped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True)
    parser.add_argument('--output', required=True)
    parser.add_argument('--param-key', default=None, help='top-level key holding the weights (e.g. state_dict)')
    parser.add_argument('--strip-prefix', default=None, help='key prefix to drop (e.g. net.)')
    args = parser.parse_args(argv)
    if not Path(args.input).is_file():
        sys.exit(f'convert_checkpoint: --input {args.input} not found')
    # weights_only=False: Lightning files hold hyper-parameters objects; only convert files you trust
    ckpt = torch.load(args.input, map_location='cpu', weights_only=False)
    try:
        params, dropped = convert(ckpt, args.param_key, args.strip_prefix)
    except KeyError as err:
        sys.exit(f'convert_checkpoint: {err.args[0]}')
    if not params:
        sys.exit(f'convert_checkpoint: no key starts with --strip-prefix {args.strip_prefix!r}')
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    torch.save({'params': params}, args.output)
    print(f'{len(params)} tensors -> {args.output}' + (f'; dropped {dropped}' if dropped else ''))


if __name__ == '__main__':
    main()
