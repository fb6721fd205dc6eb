"""All-in-one restoration data (PromptIR's protocol): denoise sigma 15/25/50, derain, dehaze in one set.

Follows PromptIR (github.com/va1shn9v/PromptIR, utils/dataset_utils.py): clean images get Gaussian
noise added on the fly in the uint8 domain (clip to [0, 255], truncate), rain/haze come as pairs,
images are cropped to a multiple of 16, training takes paired random crops with flips/rotations,
and tasks are balanced by repeating their lists (denoise x3 per sigma, derain x120, dehaze x1).

Folder layouts (datasets/README.md, section "All-in-one restoration (AIR)"):
  denoise: a folder of clean images (train: BSD400 + WED; test: BSD68)
  derain:  <root>/<lq_subdir> + <root>/<gt_subdir>: train rainy/ + gt/ (rain-1.png -> norain-1.png),
           test input/ + target/ (same names)
  dehaze:  train synthetic/ + original/ (0001_0.8_0.2.jpg -> 0001.jpg), test input/ + target/
The GT of a degraded file is found by stem: same stem, 'no' + stem, or the part before the first '_'.

Returns BasicSR's dict: lq, gt (RGB float tensors in [0, 1]), lq_path, gt_path, plus task (name)
and task_id (PromptIR's numbering). `mode: test` uses the whole (16-cropped) image and a fixed
noise seed per (seed, sigma, image), so every run and every method sees the same noisy BSD68.
"""

import os
from pathlib import Path

import numpy as np
from torch.utils import data as data

import lossagent_compat  # noqa: F401  (before basicsr)
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import FileClient, img2tensor, imfrombytes
from basicsr.utils.registry import DATASET_REGISTRY
from lossagent_errors import OptionError

TASK_IDS = {'denoise_15': 0, 'denoise_25': 1, 'denoise_50': 2, 'derain': 3, 'dehaze': 4}
README_SECTION = "datasets/README.md, section 'All-in-one restoration (AIR)'"
IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
DEFAULT_SUBDIRS = {  # (lq, gt) per mode, as PromptIR lays them out
    ('derain', 'train'): ('rainy', 'gt'),
    ('derain', 'test'): ('input', 'target'),
    ('dehaze', 'train'): ('synthetic', 'original'),
    ('dehaze', 'test'): ('input', 'target'),
}
DEFAULT_REPEAT = {'train': {'denoise': 3, 'derain': 120, 'dehaze': 1}, 'test': {'denoise': 1, 'derain': 1, 'dehaze': 1}}


def add_gaussian_noise_uint8(img, sigma, rng=None):
    """PromptIR's noise: uint8 RGB/BGR image + N(0, sigma^2) in [0, 255] units, clipped and truncated."""
    noise = (rng.standard_normal(img.shape) if rng is not None else np.random.randn(*img.shape)) * sigma
    return np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def fixed_noise_rng(seed, sigma, index):
    """The generator for test image `index` at `sigma`: same numbers in every run and every process."""
    return np.random.default_rng([int(seed), int(sigma), int(index)])


def crop_to_multiple(img, base=16):
    """Crop bottom/right so height and width divide by `base` (PromptIR's crop_img)."""
    h, w = img.shape[:2]
    return img[: h - h % base, : w - w % base]


def list_images(folder):
    return sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in IMG_EXTENSIONS)


def _require_dir(path, option_key):
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(
            f"AllInOneDataset: option '{option_key}' = {path!r} is not a folder; "
            f'prepare it as described in {README_SECTION}'
        )


def pair_by_stem(lq_dir, gt_dir, option_key):
    """(lq_path, gt_path) for every degraded image, GT matched by stem (see the module docstring)."""
    gt_index = {Path(p).stem: p for p in list_images(gt_dir)}
    pairs = []
    for lq in list_images(lq_dir):
        stem = Path(lq).stem
        for candidate in (stem, 'no' + stem, stem.split('_')[0]):
            if candidate in gt_index:
                pairs.append((lq, gt_index[candidate]))
                break
        else:
            raise FileNotFoundError(
                f"AllInOneDataset: no ground truth for {lq} in {gt_dir} (option '{option_key}'; "
                f'tried {stem}, no{stem}, {stem.split("_")[0]}); see {README_SECTION}'
            )
    return pairs


@DATASET_REGISTRY.register()
class AllInOneDataset(data.Dataset):
    """Mixed-task restoration dataset. Options (YAML):

    tasks: [denoise_15, denoise_25, denoise_50, derain, dehaze]   # any subset
    mode: train | test                  # default: train when phase is train, else test
    dataroot_denoise / dataroot_derain / dataroot_dehaze: folders (only for the listed tasks)
    lq_subdir_derain, gt_subdir_derain, lq_subdir_dehaze, gt_subdir_dehaze: override DEFAULT_SUBDIRS
    repeat: {denoise: 3, derain: 120, dehaze: 1}   # list repetition per task (test default: 1)
    gt_size: 128 (train crop), use_hflip: true, use_rot: true, crop_base: 16
    seed: 0                             # test noise seed; training noise uses numpy's global RNG,
                                        # which BasicSR seeds per worker
    io_backend: {type: disk}
    """

    OPTIONS = (
        'tasks',
        'mode',
        'dataroot_denoise',
        'dataroot_derain',
        'dataroot_dehaze',
        'lq_subdir_derain',
        'gt_subdir_derain',
        'lq_subdir_dehaze',
        'gt_subdir_dehaze',
        'repeat',
        'gt_size',
        'use_hflip',
        'use_rot',
        'crop_base',
        'seed',
    )

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.mode = opt.get('mode', 'train' if opt.get('phase') == 'train' else 'test')
        if self.mode not in ('train', 'test'):
            raise OptionError(f"AllInOneDataset: option 'mode' must be train or test, got {self.mode!r}")
        self.tasks = list(opt.get('tasks', list(TASK_IDS)))
        unknown = [t for t in self.tasks if t not in TASK_IDS]
        if unknown:
            raise OptionError(f"AllInOneDataset: option 'tasks' has unknown {unknown}; known: {list(TASK_IDS)}")
        self.crop_base = opt.get('crop_base', 16)
        self.seed = opt.get('seed', 0)
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.file_client = None
        repeat = {**DEFAULT_REPEAT[self.mode], **(opt.get('repeat') or {})}

        # samples: (task, lq_path or None for synthetic noise, gt_path, index within the task's list)
        self.samples = []
        denoise = [t for t in self.tasks if t.startswith('denoise_')]
        if denoise:
            _require_dir(opt.get('dataroot_denoise'), 'dataroot_denoise')
            clean = list_images(opt['dataroot_denoise'])
            for task in denoise:
                for _ in range(repeat['denoise']):
                    self.samples += [(task, None, p, i) for i, p in enumerate(clean)]
        for task in ('derain', 'dehaze'):
            if task not in self.tasks:
                continue
            root = opt.get(f'dataroot_{task}')
            _require_dir(root, f'dataroot_{task}')
            lq_sub, gt_sub = DEFAULT_SUBDIRS[(task, self.mode)]
            lq_sub, gt_sub = opt.get(f'lq_subdir_{task}', lq_sub), opt.get(f'gt_subdir_{task}', gt_sub)
            _require_dir(os.path.join(root, lq_sub), f'dataroot_{task}')
            _require_dir(os.path.join(root, gt_sub), f'dataroot_{task}')
            pairs = pair_by_stem(os.path.join(root, lq_sub), os.path.join(root, gt_sub), f'dataroot_{task}')
            for _ in range(repeat[task]):
                self.samples += [(task, lq, gt, i) for i, (lq, gt) in enumerate(pairs)]
        if not self.samples:
            raise FileNotFoundError(f'AllInOneDataset: no images found for tasks {self.tasks}; see {README_SECTION}')

    def _read(self, path):
        if self.file_client is None:
            self.file_client = FileClient(self.io_backend_opt.pop('type'), **self.io_backend_opt)
        img = imfrombytes(self.file_client.get(path, 'gt'), float32=False)  # uint8 BGR
        return crop_to_multiple(img, self.crop_base)

    def __getitem__(self, index):
        task, lq_path, gt_path, task_index = self.samples[index]
        gt = self._read(gt_path)
        lq = None if lq_path is None else self._read(lq_path)
        if self.mode == 'train':
            gt_size = self.opt.get('gt_size', 128)
            if lq is None:  # denoise: crop and augment the clean image, then add noise (as PromptIR)
                gt, _ = paired_random_crop(gt, gt, gt_size, 1, gt_path)
                gt = augment(gt, self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
            else:
                h, w = min(gt.shape[0], lq.shape[0]), min(gt.shape[1], lq.shape[1])
                gt, lq = paired_random_crop(gt[:h, :w], lq[:h, :w], gt_size, 1, gt_path)
                gt, lq = augment([gt, lq], self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        if lq is None:
            sigma = int(task.split('_')[1])
            rng = fixed_noise_rng(self.seed, sigma, task_index) if self.mode == 'test' else None
            lq = add_gaussian_noise_uint8(gt, sigma, rng)
            lq_path = gt_path  # no degraded file exists; BasicSR names saved images after lq_path
        gt_t, lq_t = img2tensor(
            [gt.astype(np.float32) / 255.0, lq.astype(np.float32) / 255.0], bgr2rgb=True, float32=True
        )
        return {'lq': lq_t, 'gt': gt_t, 'lq_path': lq_path, 'gt_path': gt_path, 'task': task, 'task_id': TASK_IDS[task]}

    def __len__(self):
        return len(self.samples)


@DATASET_REGISTRY.register()
class AllInOneTestDataset(AllInOneDataset):
    """`AllInOneDataset` with `mode: test` forced: whole images, fixed noise seeds (e.g. BSD68 sigma 25)."""

    def __init__(self, opt):
        super().__init__({**opt, 'mode': 'test'})
