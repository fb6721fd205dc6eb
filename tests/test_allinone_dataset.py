"""AllInOneDataset on tiny generated image folders laid out as PromptIR's train/test data."""

import random

import cv2
import numpy as np
import pytest
import torch

import lossagent_compat  # noqa: F401
import lossagent_data  # noqa: F401  (registers the datasets)
from basicsr.data import build_dataset
from lossagent_data.allinone_dataset import TASK_IDS, add_gaussian_noise_uint8, fixed_noise_rng


def _img(rng, h=40, w=36):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def roots(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / 'Denoise').mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / 'Denoise' / f'clean{i}.png'), _img(rng))
    for sub in ('rainy', 'gt', 'synthetic', 'original', 'test/input', 'test/target'):
        (tmp_path / sub).mkdir(parents=True)
    for i in (1, 2, 3):
        cv2.imwrite(str(tmp_path / 'rainy' / f'rain-{i}.png'), _img(rng))
        cv2.imwrite(str(tmp_path / 'gt' / f'norain-{i}.png'), _img(rng))
    cv2.imwrite(str(tmp_path / 'synthetic' / '0001_0.8_0.2.jpg'), _img(rng))
    cv2.imwrite(str(tmp_path / 'original' / '0001.jpg'), _img(rng))
    cv2.imwrite(str(tmp_path / 'test' / 'input' / '0005_1.png'), _img(rng, 35, 50))
    cv2.imwrite(str(tmp_path / 'test' / 'target' / '0005.png'), _img(rng, 35, 50))
    return tmp_path


def _train_opt(roots, **kw):
    opt = dict(
        name='air',
        type='AllInOneDataset',
        phase='train',
        dataroot_denoise=str(roots / 'Denoise'),
        dataroot_derain=str(roots),
        dataroot_dehaze=str(roots),
        gt_size=16,
        repeat={'denoise': 1, 'derain': 2, 'dehaze': 1},
        io_backend={'type': 'disk'},
    )
    opt.update(kw)
    return opt


def test_train_mixes_tasks_with_paired_crops(roots):
    ds = build_dataset(_train_opt(roots))
    # 3 sigmas x 2 clean + 2 x 3 rain pairs + 1 haze pair
    assert len(ds) == 6 + 6 + 1
    random.seed(0)
    np.random.seed(0)
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) >= {'lq', 'gt', 'lq_path', 'gt_path', 'task', 'task_id'}
        assert item['lq'].shape == item['gt'].shape == (3, 16, 16)
        assert item['lq'].min() >= 0 and item['lq'].max() <= 1
        assert item['task_id'] == TASK_IDS[item['task']]
        seen.add(item['task'])
        if item['task'] == 'derain':
            assert item['gt_path'].endswith('norain-' + item['lq_path'].split('rain-')[-1])
        if item['task'] == 'dehaze':
            assert item['gt_path'].endswith('original/0001.jpg')
    assert seen == set(TASK_IDS)


def test_train_crop_is_paired(roots):
    """With lq == gt on disk, a paired crop + flip/rot must give identical tensors."""
    for sub, name in (('rainy', 'rain-1.png'), ('gt', 'norain-1.png')):
        cv2.imwrite(
            str(roots / sub / name), np.arange(40 * 36 * 3, dtype=np.uint32).reshape(40, 36, 3).astype(np.uint8)
        )
    ds = build_dataset(_train_opt(roots, tasks=['derain'], repeat={'derain': 1}))
    random.seed(3)
    item = next(ds[i] for i in range(len(ds)) if ds[i]['lq_path'].endswith('rain-1.png'))
    assert torch.equal(item['lq'], item['gt'])


def test_test_mode_fixed_noise_per_image(roots):
    opt = dict(
        name='bsd68',
        type='AllInOneTestDataset',
        phase='val',
        tasks=['denoise_25'],
        dataroot_denoise=str(roots / 'Denoise'),
        seed=7,
        io_backend={'type': 'disk'},
    )
    a, b = build_dataset(opt), build_dataset(dict(opt))
    assert len(a) == 2
    np.random.seed(123)  # the global RNG must not matter in test mode
    first = a[1]
    np.random.seed(999)
    assert torch.equal(first['lq'], b[1]['lq'])
    assert first['gt'].shape == (3, 32, 32)  # 40x36 cropped to multiples of 16
    clean = cv2.imread(first['gt_path'])[:32, :32]
    expected = add_gaussian_noise_uint8(clean, 25, fixed_noise_rng(7, 25, 1))
    got = (first['lq'].numpy().transpose(1, 2, 0)[:, :, ::-1] * 255).round().astype(np.uint8)
    assert np.array_equal(got, expected)


def test_test_mode_pairs_dehaze_input_target(roots):
    ds = build_dataset(
        dict(
            name='sots',
            type='AllInOneDataset',
            mode='test',
            tasks=['dehaze'],
            dataroot_dehaze=str(roots / 'test'),
            io_backend={'type': 'disk'},
        )
    )
    item = ds[0]
    assert item['gt_path'].endswith('target/0005.png') and item['lq'].shape == (3, 32, 48)


def test_missing_folder_names_option_and_readme(roots):
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(_train_opt(roots, dataroot_derain=str(roots / 'nope')))
    msg = str(err.value)
    assert "'dataroot_derain'" in msg and 'nope' in msg and 'datasets/README.md' in msg and '\n' not in msg
