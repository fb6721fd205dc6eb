"""inference.py: a folder restored with a trained checkpoint, whole or in tiles, on the demo's shipped network."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import lossagent_compat  # noqa: F401
import inference
from lossagent_data.skimage_dataset import bicubic_pair, load_photo
from lossagent_runtime.option_file import load_yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_OPT = ROOT / 'options' / 'train' / 'demo_cpu.yml'
DEMO_CKPT = ROOT / 'experiments' / 'pretrained_models' / 'demo_swinir_x4_l1.pth'


def lr_photo(name: str) -> np.ndarray:
    """The x4 MATLAB-bicubic LR of a real skimage photo, as uint8 BGR."""
    _, lq = bicubic_pair(load_photo(name), 4)
    return (lq[:, :, ::-1] * 255).round().astype(np.uint8)


@pytest.fixture(scope='module')
def demo_net():
    opt = load_yaml(str(DEMO_OPT))
    return opt, inference.load_network(opt, str(DEMO_CKPT), torch.device('cpu'))


def test_tiled_output_matches_whole_image_output(demo_net):
    opt, net = demo_net
    lq = torch.from_numpy(lr_photo('coffee')[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    assert lq.shape[-2:] == (100, 150)  # not multiples of the window (8) nor of the tile
    whole = inference.restore(net, lq, 4, inference.pad_multiple(opt))
    tiled = inference.restore_tiled(net, lq, 4, inference.pad_multiple(opt), tile=48, tile_pad=16)
    assert tiled.shape == whole.shape == (1, 3, 400, 600)
    diff = (whole - tiled).abs()
    # measured with inference.py (tile 64, pad 16): saved PNGs differ by at most 1 level, PSNR 97 dB
    assert float(diff.mean()) < 1e-3 and float(diff.max()) < 0.05
    no_context = inference.restore_tiled(net, lq, 4, inference.pad_multiple(opt), tile=48, tile_pad=0)
    assert float((whole - no_context).abs().mean()) > 5 * float(diff.mean())  # the context pad matters


def test_ema_weights_are_used_when_present(tmp_path, demo_net):
    opt, _ = demo_net
    params = torch.load(DEMO_CKPT, map_location='cpu', weights_only=True)['params']
    ema = {k: v * 0.5 if v.is_floating_point() else v for k, v in params.items()}
    torch.save({'params': params, 'params_ema': ema}, tmp_path / 'both.pth')
    net = inference.load_network(opt, str(tmp_path / 'both.pth'), torch.device('cpu'))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in ema.items() if not k.endswith('attn_mask'))


def test_folder_end_to_end_on_the_demo_checkpoint(tmp_path):
    src, out = tmp_path / 'in', tmp_path / 'out'
    src.mkdir()
    for name in ('chelsea', 'camera'):
        cv2.imwrite(str(src / f'{name}.png'), lr_photo(name)[:60, :90])
    (src / 'notes.txt').write_text('not an image')
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / 'inference.py'),
            '-opt',
            str(DEMO_OPT),
            '--input',
            str(src),
            '--output',
            str(out),
            '--model',
            str(DEMO_CKPT),
            '--tile',
            '32',
            '--suffix',
            '_x4',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ['camera_x4.png', 'chelsea_x4.png']
    assert cv2.imread(str(out / 'chelsea_x4.png')).shape == (240, 360, 3)
    assert '2 images' in proc.stdout and '100%' in proc.stderr  # the progress bar
    # the restoration is better than bicubic upsampling against the ground truth
    gt = (load_photo('chelsea')[:240, :360, ::-1] * 255).round()
    sr = cv2.imread(str(out / 'chelsea_x4.png')).astype(np.float64)
    bicubic = cv2.resize(lr_photo('chelsea')[:60, :90], (360, 240), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    assert np.mean((sr - gt) ** 2) < np.mean((bicubic - gt) ** 2)


@pytest.mark.parametrize(
    'args, message',
    [
        (['--input', 'no/such/folder'], '--input: no/such/folder is not a folder'),
        (['--model', 'missing.pth'], "--model: checkpoint 'missing.pth' not found"),
    ],
)
def test_mistakes_are_one_line(tmp_path, args, message):
    src = tmp_path / 'in'
    src.mkdir()
    cv2.imwrite(str(src / 'a.png'), lr_photo('coffee')[:32, :32])
    base = {'--input': str(src), '--model': str(DEMO_CKPT)}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ['-opt', str(DEMO_OPT), '--output', str(tmp_path / 'out')] + [x for kv in base.items() for x in kv]
    assert inference.main(argv) == 2
