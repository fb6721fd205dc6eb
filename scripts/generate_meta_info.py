"""Write a BasicSR meta-info file: one line per image, `<relative path> (<h>,<w>,<c>)`.

BasicSR's PairedImageDataset (`meta_info_file`) and our configs read the first field only; the
shape is there for humans and for LMDB tools.

    python scripts/generate_meta_info.py --input datasets/DF2K/DF2K_HR_sub \
        --output datasets/DF2K/meta_info_DF2K_sub.txt
"""

import argparse
import sys
from pathlib import Path

import cv2

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def meta_lines(folder):
    lines = []
    for path in sorted(p for p in Path(folder).rglob('*') if p.suffix.lower() in IMG_EXTENSIONS):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f'cannot read image {path}')
        c = 1 if img.ndim == 2 else img.shape[2]
        lines.append(f'{path.relative_to(folder).as_posix()} ({img.shape[0]},{img.shape[1]},{c})')
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True)
    parser.add_argument('--output', required=True)
    args = parser.parse_args(argv)
    if not Path(args.input).is_dir():
        sys.exit(f'generate_meta_info: --input {args.input} is not a folder')
    lines = meta_lines(args.input)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(''.join(line + '\n' for line in lines))
    print(f'{len(lines)} entries -> {args.output}')


if __name__ == '__main__':
    main()
