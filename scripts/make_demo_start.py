"""Make the CPU demo's (and the policy study's) starting network: an L1-pretrained tiny SwinIR x4.

    python scripts/make_demo_start.py            # trains options/train/demo_pretrain_l1.yml, ~1 min

Trains the option file through train.py (one thread, so the result does not depend on the
machine's load), then writes the generator compactly -- floating-point tensors as float16,
integer buffers as int16 -- to experiments/pretrained_models/demo_swinir_x4_l1.pth under BasicSR's
`params` key, so `path.pretrain_network_g` loads it like any BasicSR checkpoint (load_state_dict
casts back). Prints its size, its SHA-256, and how far the compact copy's output on a held-out
photo is from the full-precision network's (PSNR between the two outputs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ROOT / 'options' / 'train' / 'demo_pretrain_l1.yml'
TARGET = ROOT / 'experiments' / 'pretrained_models' / 'demo_swinir_x4_l1.pth'


def compact(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        if value.is_floating_point():
            out[key] = value.to(torch.float16)
        elif value.abs().max() < 2**15:
            out[key] = value.to(torch.int16)
        else:
            out[key] = value
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=TARGET)
    ap.add_argument('--reuse', action='store_true', help='compact an existing run instead of training again')
    args = ap.parse_args(argv)
    import yaml

    name = yaml.safe_load(OPTIONS.read_text())['name']
    trained = ROOT / 'experiments' / name / 'models' / 'net_g_latest.pth'
    if not (args.reuse and trained.exists()):
        env = {
            **os.environ,
            'OMP_NUM_THREADS': '1',
            'HF_HUB_OFFLINE': '1',
            'PYTHONPATH': os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p),
        }
        subprocess.run([sys.executable, str(ROOT / 'train.py'), '-opt', str(OPTIONS)], cwd=ROOT, env=env, check=True)
    state = torch.load(trained, map_location='cpu', weights_only=True)['params']
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'params': compact(state)}, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(
        f'{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: '
        f'{args.out.stat().st_size / 1024:.0f} KiB, sha256 {digest[:16]}; compact vs full output on coffee: '
        f'{rounding_psnr(yaml.safe_load(OPTIONS.read_text())["network_g"], state, args.out):.1f} dB'
    )
    return 0


def rounding_psnr(net_opt: dict, full: dict, compact_path: Path) -> float:
    sys.path.insert(0, str(ROOT))
    import lossagent_compat  # noqa: F401
    from basicsr.archs import build_network
    from lossagent_data.skimage_dataset import bicubic_pair, load_photo

    _, lq = bicubic_pair(load_photo('coffee')[:192, :192], 4)
    x = torch.from_numpy(lq.transpose(2, 0, 1).copy())[None]
    outputs = []
    for state in (full, torch.load(compact_path, weights_only=True)['params']):
        net = build_network(dict(net_opt)).eval()
        net.load_state_dict(state)
        with torch.no_grad():
            outputs.append(net(x).clamp(0, 1))
    mse = float(((outputs[0] - outputs[1]) ** 2).mean())
    return 10 * torch.log10(torch.tensor(1 / max(mse, 1e-12))).item()


if __name__ == '__main__':
    sys.exit(main())
