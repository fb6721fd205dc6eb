"""Crop large training images (DF2K) into overlapping sub-images, as BasicSR's DF2K preparation does.

Small crops make data loading cheap (a 2K PNG decoded per 128 px patch wastes most of the work).
HR defaults: 480 px crops every 240 px, sub-images smaller than 48 px at the border are skipped.
For the x4 LR folder use crop 120, step 60, thresh 12 so LR/HR sub-images stay aligned.

    python scripts/extract_subimages.py --input datasets/DF2K/DF2K_HR --output datasets/DF2K/DF2K_HR_sub
    python scripts/extract_subimages.py --input datasets/DF2K/DF2K_LR_bicubic/X4 \
        --output datasets/DF2K/DF2K_LR_bicubic/X4_sub --crop-size 120 --step 60 --thresh-size 12
"""

import argparse
import os
import re
import sys
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def crop_starts(length, crop_size, step, thresh_size):
    """Top-left offsets along one axis; a last crop flush with the border if the rest > thresh_size."""
    starts = [int(s) for s in np.arange(0, length - crop_size + 1, step)]
    if starts and length - (starts[-1] + crop_size) > thresh_size:
        starts.append(length - crop_size)
    return starts  # empty when the image is smaller than one crop: it is skipped


def extract_one(path, output, crop_size, step, thresh_size, compression):
    """Write <stem>_s001.png, _s002.png, ... for one image; returns the number written."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'cannot read image {path}')
    h, w = img.shape[:2]
    # DIV2K's official LR files are named 0001x4.png: drop the suffix so LR and HR crops share names
    stem = re.sub(r'x[2348]$', '', Path(path).stem)
    index = 0
    for y in crop_starts(h, crop_size, step, thresh_size):
        for x in crop_starts(w, crop_size, step, thresh_size):
            index += 1
            crop = np.ascontiguousarray(img[y : y + crop_size, x : x + crop_size, ...])
            cv2.imwrite(
                os.path.join(output, f'{stem}_s{index:03d}.png'), crop, [cv2.IMWRITE_PNG_COMPRESSION, compression]
            )
    return index


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True)
    parser.add_argument('--output', required=True)
    parser.add_argument('--crop-size', type=int, default=480)
    parser.add_argument('--step', type=int, default=240)
    parser.add_argument('--thresh-size', type=int, default=48)
    parser.add_argument('--compression', type=int, default=3, help='PNG compression level 0-9')
    parser.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 2) // 2))
    args = parser.parse_args(argv)
    if not os.path.isdir(args.input):
        sys.exit(f'extract_subimages: --input {args.input} is not a folder (see datasets/README.md, DF2K)')
    if os.path.isdir(args.output) and os.listdir(args.output):
        sys.exit(f'extract_subimages: --output {args.output} exists and is not empty; remove it first')
    os.makedirs(args.output, exist_ok=True)
    paths = sorted(str(p) for p in Path(args.input).iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
    jobs = [(p, args.output, args.crop_size, args.step, args.thresh_size, args.compression) for p in paths]
    if args.workers > 1:
        with Pool(args.workers) as pool:
            counts = pool.starmap(extract_one, jobs)
    else:
        counts = [extract_one(*job) for job in jobs]
    print(f'{sum(counts)} sub-images from {len(paths)} images -> {args.output}')


if __name__ == '__main__':
    main()
