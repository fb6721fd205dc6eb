"""Make the bicubic test/train pairs: GT cropped to a multiple of the scale (GTmod<scale>) and its
MATLAB-style bicubic downscale (LRbicx<scale>), using basicsr's `imresize` (MATLAB's antialiased
bicubic, the convention of SR benchmarks; OpenCV's bicubic gives different pixels).

    python scripts/make_bicubic_lr.py --input datasets/Set14/original --scale 4 \
        --gt-output datasets/Set14/GTmod4 --lr-output datasets/Set14/LRbicx4
    # DF2K training LR (GT folder already a multiple of 4 in size):
    python scripts/make_bicubic_lr.py --input datasets/DF2K/DF2K_HR --scale 4 \
        --lr-output datasets/DF2K/DF2K_LR_bicubic/X4
"""

import argparse
import os
import sys
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lossagent_compat  # noqa: F401,E402  (before basicsr)
from basicsr.utils.matlab_functions import imresize  # noqa: E402

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def mod_crop(img, scale):
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale, ...]


def bicubic_downscale(img_uint8, scale):
    """uint8 HxWxC -> uint8 (H/scale)x(W/scale)xC with MATLAB bicubic (rounded like MATLAB's uint8)."""
    lr = imresize(img_uint8.astype(np.float64) / 255.0, 1 / scale)
    return np.clip(np.round(lr * 255.0), 0, 255).astype(np.uint8)


def process(path, scale, gt_output, lr_output):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'cannot read image {path}')
    gt = mod_crop(img, scale)
    name = Path(path).stem + '.png'
    if gt_output:
        cv2.imwrite(os.path.join(gt_output, name), gt)
    cv2.imwrite(os.path.join(lr_output, name), bicubic_downscale(gt, scale))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True)
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--gt-output', default=None, help='where to write the mod-cropped GT (optional)')
    parser.add_argument('--lr-output', required=True)
    parser.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 2) // 2))
    args = parser.parse_args(argv)
    if not os.path.isdir(args.input):
        sys.exit(f'make_bicubic_lr: --input {args.input} is not a folder (see datasets/README.md)')
    for folder in (args.gt_output, args.lr_output):
        if folder:
            os.makedirs(folder, exist_ok=True)
    paths = sorted(str(p) for p in Path(args.input).iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
    jobs = [(p, args.scale, args.gt_output, args.lr_output) for p in paths]
    if args.workers > 1:
        with Pool(args.workers) as pool:
            pool.starmap(process, jobs)
    else:
        for job in jobs:
            process(*job)
    print(f'{len(paths)} images, x{args.scale} bicubic -> {args.lr_output}')


if __name__ == '__main__':
    main()
