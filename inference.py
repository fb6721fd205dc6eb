"""Restore every image of a folder with a trained network (no ground truth), like BasicSR's inference/ scripts:

    python inference.py -opt options/train/CISR_niqe.yml --input LR_folder --output SR_folder
    python inference.py -opt options/train/demo_cpu.yml --input in/ --output out/ --tile 256 --tile_pad 16

The option file gives the network (`network_g`) and the scale; the weights are `--model`, else the run's
experiments/<name>/models/net_g_latest.pth, else the file's `path.pretrain_network_g`. BasicSR's EMA
weights (`params_ema`) are used when the checkpoint has them, else `params`. The input is padded to a
multiple of the window (`agent.pad_multiple`, else `network_g.window_size`) and the output cropped back.
`--tile N` restores N x N input tiles, each with `--tile_pad` pixels of context on every side that are
cut away again (Real-ESRGAN's tile_process), so large images fit in memory.
"""

import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lossagent_compat  # noqa: F401,E402  (before basicsr)
from lossagent_errors import OptionError, UserError  # noqa: E402

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def default_checkpoint(opt: dict) -> str:
    latest = os.path.join('experiments', opt['name'], 'models', 'net_g_latest.pth')
    if os.path.isfile(latest):
        return latest
    start = (opt.get('path') or {}).get('pretrain_network_g')
    if not start:
        raise OptionError(f'--model: no {latest} and no path.pretrain_network_g in the option file; name a checkpoint')
    return start


def load_network(opt: dict, checkpoint: str, device):
    import lossagent_arch  # noqa: F401  (registers our architectures)
    from basicsr.archs import build_network
    from lossagent_eval.checkpoint import load_checkpoint

    net = build_network(dict(opt['network_g']))
    load_checkpoint(net, checkpoint, param_key='params_ema', strict=True, owner='--model')  # falls back to params
    return net.to(device).eval()


def pad_multiple(opt: dict) -> int:
    return int((opt.get('agent') or {}).get('pad_multiple') or opt['network_g'].get('window_size') or 1)


def restore(net, lq, scale: int, multiple: int):
    """The network's output for one (1, c, h, w) input, padded to `multiple` and cropped back."""
    import torch
    from lossagent_arch.padding import pad_to_multiple

    padded, (h, w) = pad_to_multiple(lq, multiple) if multiple > 1 else (lq, lq.shape[-2:])
    with torch.no_grad():
        return net(padded)[..., : h * scale, : w * scale]


def restore_tiled(net, lq, scale: int, multiple: int, tile: int, tile_pad: int):
    """`restore` tile by tile: each tile x tile block is restored with `tile_pad` input pixels of context
    around it (less at the image border), and only the block's own output is kept."""
    import torch

    b, c, h, w = lq.shape
    out = torch.zeros(b, c, h * scale, w * scale, dtype=lq.dtype, device=lq.device)
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            y0, x0 = max(top - tile_pad, 0), max(left - tile_pad, 0)
            y1, x1 = min(bottom + tile_pad, h), min(right + tile_pad, w)
            part = restore(net, lq[..., y0:y1, x0:x1], scale, multiple)
            out[..., top * scale : bottom * scale, left * scale : right * scale] = part[
                ..., (top - y0) * scale : (bottom - y0) * scale, (left - x0) * scale : (right - x0) * scale
            ]
    return out


def list_images(folder: str) -> list:
    if not os.path.isdir(folder):
        raise OptionError(f'--input: {folder} is not a folder')
    paths = sorted(p for p in glob.glob(os.path.join(folder, '*')) if p.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise OptionError(f'--input: no images ({", ".join(IMAGE_EXTENSIONS)}) in {folder}')
    return paths


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='the training option file (network_g, scale, name)')
    parser.add_argument('--input', required=True, help='folder of low-quality images')
    parser.add_argument('--output', required=True, help='folder for the restored images (PNG)')
    parser.add_argument('--model', default=None, help="checkpoint (default: the run's net_g_latest.pth)")
    parser.add_argument('--tile', type=int, default=0, help='input tile size; 0 = whole images')
    parser.add_argument('--tile_pad', type=int, default=16, help='context pixels around each tile')
    parser.add_argument('--suffix', default='', help='appended to each output name')
    parser.add_argument('--device', default='auto', help='auto | cpu | cuda | cuda:N')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import cv2
        import torch
        from tqdm import tqdm
        from basicsr.utils import img2tensor, imwrite, tensor2img
        from lossagent_runtime.option_file import load_yaml

        opt = load_yaml(args.opt)
        if not isinstance(opt.get('network_g'), dict):
            raise OptionError(f'network_g: required in {args.opt}')
        if args.tile < 0 or args.tile_pad < 0:
            raise OptionError('--tile/--tile_pad: expected non-negative sizes')
        paths = list_images(args.input)
        checkpoint = args.model or default_checkpoint(opt)
        auto = 'cuda' if torch.cuda.is_available() else 'cpu'
        device = torch.device(auto if args.device == 'auto' else args.device)
        net = load_network(opt, checkpoint, device)
    except (UserError, FileNotFoundError) as err:
        print(f'inference.py: error: {err}', file=sys.stderr)
        return 2
    scale, multiple = int(opt.get('scale', 1)), pad_multiple(opt)
    os.makedirs(args.output, exist_ok=True)
    print(f'{len(paths)} images, {checkpoint} on {device}' + (f', tiles of {args.tile}' if args.tile else ''))
    for path in tqdm(paths, unit='img'):
        img = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR uint8; grey images become 3 channels
        if img is None:
            print(f'skipped {path}: not readable as an image', file=sys.stderr)
            continue
        lq = img2tensor(img.astype('float32') / 255.0, bgr2rgb=True, float32=True)[None].to(device)
        if args.tile:
            out = restore_tiled(net, lq, scale, multiple, args.tile, args.tile_pad)
        else:
            out = restore(net, lq, scale, multiple)
        stem = os.path.splitext(os.path.basename(path))[0]
        imwrite(tensor2img(out.cpu()), os.path.join(args.output, f'{stem}{args.suffix}.png'))
    print(f'written to {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
