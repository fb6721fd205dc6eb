"""Real photographs that ship inside scikit-image, degraded on the fly (MATLAB-style bicubic).

The offline demo, the tests and the CPU policy study train and validate on these, so
nothing has to be downloaded. Photos are split by name in the YAML (`images:`), so the
agent's validation photos and the held-out evaluation photos never appear in training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils import data as torch_data

from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import DATASET_REGISTRY
from lossagent_errors import OptionError

# Photos (and textures) in skimage.data that need no download.
SHIPPED_PHOTOS = (
    'astronaut',
    'brick',
    'camera',
    'cell',
    'chelsea',
    'clock',
    'coffee',
    'coins',
    'colorwheel',
    'grass',
    'gravel',
    'hubble_deep_field',
    'immunohistochemistry',
    'moon',
    'retina',
    'rocket',
    'stereo_motorcycle',
)
# Photos that other installed packages ship (the policy study's final-test set): name -> (package, file)
PACKAGED_PHOTOS = {
    'grace_hopper': ('matplotlib', 'mpl-data/sample_data/grace_hopper.jpg'),
    **{f'kodim{k:02d}': ('pyiqa', f'ResultsCalibra/ref_dir/I{k:02d}.bmp') for k in (3, 4, 6, 8, 19)},
}


def packaged_photo_path(name: str) -> str:
    import importlib.metadata

    package, relative = PACKAGED_PHOTOS[name]
    if package == 'matplotlib':
        import matplotlib

        return str(Path(matplotlib.__file__).parent / relative)
    return str(importlib.metadata.distribution(package).locate_file(relative))


def load_photo(name: str) -> np.ndarray:
    """An skimage.data photo as float32 HWC RGB in [0, 1]."""
    if name in PACKAGED_PHOTOS:
        from skimage import io

        path = packaged_photo_path(name)
        if not Path(path).is_file():
            raise OptionError(f"images: '{name}' should be {path} (from {PACKAGED_PHOTOS[name][0]}); it is missing")
        img = io.imread(path)
    elif name not in SHIPPED_PHOTOS:
        raise OptionError(
            f"images: '{name}' is not a photo shipped in skimage.data or {sorted(PACKAGED_PHOTOS)}; "
            f'choose from {", ".join(SHIPPED_PHOTOS)}'
        )
    else:
        from skimage import data as skdata

        img = getattr(skdata, name)()
    if isinstance(img, tuple):  # stereo pairs: the left view
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3]).astype(np.float32) / 255.0


def bicubic_pair(gt: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop `gt` to a multiple of `scale` and downsample it the way MATLAB's imresize does."""
    h, w = gt.shape[0] - gt.shape[0] % scale, gt.shape[1] - gt.shape[1] % scale
    gt = gt[:h, :w]
    lq = np.clip(imresize(gt, 1 / scale), 0, 1).astype(np.float32)
    return gt, lq


def grid_positions(length: int, crop: int, count: int) -> list[int]:
    if length < crop:
        raise OptionError(f'crop_size {crop} is larger than an image side of {length}')
    if count == 1:
        return [(length - crop) // 2]
    return [round(i * (length - crop) / (count - 1)) for i in range(count)]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


@DATASET_REGISTRY.register()
class SkimagePhotoDataset(torch_data.Dataset):
    """Paired LR/HR samples from skimage.data photos.

    Options:
        images (list[str]): photo names (see SHIPPED_PHOTOS).
        scale (int): set by BasicSR from the top-level `scale`.
        phase: 'train' -> random `gt_size` crops with flips/rotations (`use_hflip`, `use_rot`);
            otherwise a fixed grid of `crops_per_side`² crops of `crop_size` per photo, so the
            validation set is the same every run.
        min_std (float, default 0): fixed crops whose ground truth has a lower standard deviation
            (in [0, 1] units) are left out -- e.g. retina's black corners, where NIQE returns ~30
            for a flat patch and PSNR ~65 dB, which would dominate any mean over crops.
    """

    OPTIONS = ('images', 'gt_size', 'use_hflip', 'use_rot', 'crop_size', 'crops_per_side', 'min_std')

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.scale = int(opt['scale'])
        self.train = opt.get('phase') == 'train'
        names = opt.get('images')
        if not names:
            raise OptionError(f"datasets option 'images' is empty for dataset '{opt.get('name')}'")
        self.samples: list[tuple[str, np.ndarray, np.ndarray]] = []
        for name in names:
            photo = load_photo(name)
            if self.train:
                gt, lq = bicubic_pair(photo, self.scale)
                self.samples.append((name, gt, lq))
            else:
                self.samples.extend(self._fixed_crops(name, photo))

    def _fixed_crops(self, name: str, photo: np.ndarray):
        crop = int(self.opt.get('crop_size', 192))
        per_side = int(self.opt.get('crops_per_side', 1))
        min_std = float(self.opt.get('min_std', 0))
        if crop % self.scale:
            raise OptionError(f'crop_size {crop} must be a multiple of scale {self.scale}')
        for i, top in enumerate(grid_positions(photo.shape[0], crop, per_side)):
            for j, left in enumerate(grid_positions(photo.shape[1], crop, per_side)):
                if min_std > 0 and float(photo[top : top + crop, left : left + crop].std()) < min_std:
                    continue
                gt, lq = bicubic_pair(photo[top : top + crop, left : left + crop], self.scale)
                yield f'{name}_{i}{j}', gt, lq

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        name, gt, lq = self.samples[index]
        if self.train:
            gt, lq = paired_random_crop(gt, lq, int(self.opt['gt_size']), self.scale, name)
            gt, lq = gt.copy(), lq.copy()  # crops are views; augment flips in place
            gt, lq = augment([gt, lq], self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        path = f'skimage.data/{name}'
        return {'lq': to_tensor(lq), 'gt': to_tensor(gt), 'lq_path': path, 'gt_path': path}
