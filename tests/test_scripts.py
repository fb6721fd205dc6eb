"""Data preparation scripts on tiny generated images."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

import lossagent_compat  # noqa: F401
from basicsr.utils.matlab_functions import imresize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
import extract_subimages  # noqa: E402
import generate_meta_info  # noqa: E402
import generate_noisy_testset  # noqa: E402
import make_bicubic_lr  # noqa: E402
import convert_checkpoint  # noqa: E402,F401


def _write(folder, name, h, w, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / name), img)
    return img


def test_crop_starts_like_basicsr():
    assert extract_subimages.crop_starts(100, 48, 24, 10) == [0, 24, 48]  # 100-(48+48)=4 <= 10: no extra crop
    assert extract_subimages.crop_starts(110, 48, 24, 10) == [0, 24, 48, 62]
    assert extract_subimages.crop_starts(30, 48, 24, 10) == []


def test_extract_subimages_two_workers(tmp_path):
    img = _write(tmp_path / 'hr', '0001.png', 100, 76)
    _write(tmp_path / 'hr', '0002x4.png', 40, 40, seed=1)
    extract_subimages.main(
        [
            '--input',
            str(tmp_path / 'hr'),
            '--output',
            str(tmp_path / 'sub'),
            '--crop-size',
            '48',
            '--step',
            '24',
            '--thresh-size',
            '10',
            '--workers',
            '2',
        ]
    )
    names = sorted(p.name for p in (tmp_path / 'sub').iterdir())
    # 0001: rows [0,24,48] x cols [0,24] = 6 crops; 0002x4 is smaller than a crop (skipped)
    assert names == [f'0001_s{i:03d}.png' for i in range(1, 7)]
    crop = cv2.imread(str(tmp_path / 'sub' / '0001_s006.png'))
    assert np.array_equal(crop, img[48:96, 24:72])


def test_generate_meta_info(tmp_path):
    _write(tmp_path / 'imgs', 'b.png', 8, 6)
    _write(tmp_path / 'imgs' / 'sub', 'a.png', 4, 5)
    generate_meta_info.main(['--input', str(tmp_path / 'imgs'), '--output', str(tmp_path / 'meta.txt')])
    assert (tmp_path / 'meta.txt').read_text().splitlines() == ['b.png (8,6,3)', 'sub/a.png (4,5,3)']


def test_make_bicubic_lr_matches_basicsr_imresize(tmp_path):
    img = _write(tmp_path / 'orig', 'x.png', 35, 42)
    make_bicubic_lr.main(
        [
            '--input',
            str(tmp_path / 'orig'),
            '--scale',
            '4',
            '--gt-output',
            str(tmp_path / 'gt'),
            '--lr-output',
            str(tmp_path / 'lr'),
            '--workers',
            '1',
        ]
    )
    gt, lr = cv2.imread(str(tmp_path / 'gt' / 'x.png')), cv2.imread(str(tmp_path / 'lr' / 'x.png'))
    assert gt.shape == (32, 40, 3) and np.array_equal(gt, img[:32, :40])
    expected = np.clip(np.round(imresize(gt / 255.0, 0.25) * 255), 0, 255).astype(np.uint8)
    assert lr.shape == (8, 10, 3) and np.array_equal(lr, expected)


def test_generate_noisy_testset_cli_is_reproducible(tmp_path):
    _write(tmp_path / 'clean', 'a.png', 40, 36)
    _write(tmp_path / 'clean', 'b.png', 33, 33, seed=2)
    args = ['--input', str(tmp_path / 'clean'), '--sigma', '25', '--seed', '3', '--gt-output', str(tmp_path / 'gt')]
    # once as a command line, once in-process: same files
    subprocess.run(
        [sys.executable, str(ROOT / 'scripts' / 'generate_noisy_testset.py'), '--output', str(tmp_path / 'n1')] + args,
        check=True,
        capture_output=True,
    )
    generate_noisy_testset.main(['--output', str(tmp_path / 'n2')] + args)
    outs = [[cv2.imread(str(tmp_path / run / n)) for n in ('a.png', 'b.png')] for run in ('n1', 'n2')]
    assert all(np.array_equal(x, y) for x, y in zip(*outs))
    assert outs[0][0].shape == (32, 32, 3) and outs[0][1].shape == (32, 32, 3)
    noise = outs[0][0].astype(float) - cv2.imread(str(tmp_path / 'gt' / 'a.png')).astype(float)
    assert 15 < noise.std() < 30  # sigma 25 (minus clipping)


def test_convert_checkpoint_lightning_to_basicsr(tmp_path):
    import torch

    src = {
        'epoch': 3,
        'state_dict': {'net.a.weight': torch.ones(2), 'net.b': torch.zeros(1), 'loss_fn.x': torch.ones(1)},
    }
    torch.save(src, tmp_path / 'model.ckpt')
    convert_checkpoint.main(
        [
            '--input',
            str(tmp_path / 'model.ckpt'),
            '--param-key',
            'state_dict',
            '--strip-prefix',
            'net.',
            '--output',
            str(tmp_path / 'out' / 'm.pth'),
        ]
    )
    out = torch.load(tmp_path / 'out' / 'm.pth', weights_only=True)
    assert list(out) == ['params'] and sorted(out['params']) == ['a.weight', 'b']
    assert torch.equal(out['params']['a.weight'], torch.ones(2))
