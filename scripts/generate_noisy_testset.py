"""Write a fixed-seed noisy copy of a clean test set (e.g. BSD68 at sigma 15/25/50).

The noise is exactly what `AllInOneTestDataset` adds on the fly (PromptIR's uint8 Gaussian noise,
generator seeded by (seed, sigma, image index in sorted order)), so evaluating the written pairs
with BasicSR's PairedImageDataset gives the same numbers as `mode: test`.

    python scripts/generate_noisy_testset.py --input datasets/allinone/test/denoise/bsd68 \
        --output datasets/allinone/test/denoise/bsd68_sigma25 --sigma 25 --seed 0
"""

import argparse
import os
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lossagent_data.allinone_dataset import (
    add_gaussian_noise_uint8,
    crop_to_multiple,
    fixed_noise_rng,  # noqa: E402
    list_images,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of clean images')
    parser.add_argument('--output', required=True, help='folder for the noisy images (same names, .png)')
    parser.add_argument('--sigma', type=int, required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--crop-base', type=int, default=16, help='crop to a multiple (PromptIR: 16); 1 = none')
    parser.add_argument('--gt-output', default=None, help='also write the cropped clean images here')
    args = parser.parse_args(argv)
    if not os.path.isdir(args.input):
        sys.exit(f'generate_noisy_testset: --input {args.input} is not a folder (see datasets/README.md)')
    os.makedirs(args.output, exist_ok=True)
    if args.gt_output:
        os.makedirs(args.gt_output, exist_ok=True)
    paths = list_images(args.input)
    for index, path in enumerate(paths):
        clean = crop_to_multiple(cv2.imread(path, cv2.IMREAD_COLOR), args.crop_base)
        noisy = add_gaussian_noise_uint8(clean, args.sigma, fixed_noise_rng(args.seed, args.sigma, index))
        name = Path(path).stem + '.png'
        cv2.imwrite(os.path.join(args.output, name), noisy)
        if args.gt_output:
            cv2.imwrite(os.path.join(args.gt_output, name), clean)
    print(f'{len(paths)} images, sigma {args.sigma}, seed {args.seed} -> {args.output}')


if __name__ == '__main__':
    main()
