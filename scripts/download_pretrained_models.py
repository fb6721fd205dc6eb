"""Fetch every weight file the paper's option files need, into the folders they name (BasicSR's
scripts/download_pretrained_models.py, for LossAgent):

    python scripts/download_pretrained_models.py            # everything
    python scripts/download_pretrained_models.py SwinIR VGG # only these groups
    python scripts/download_pretrained_models.py --list     # what would be fetched, and where

One line per file: `ok` (present and verified), `fetched`, `resumed` (a `.part` left by an interrupted
download continues with an HTTP Range request), or `FAILED` with the reason. A dropped connection is
retried from where it stopped (--retries). Verification: the full sha256 where it is published (CLIP
puts it in its URL), else the sha256 prefix that torch.hub's file names carry (`vgg19-dcbb9e9d.pth`),
else -- no checksum can be known offline for that release -- the size the server announced and the
integrity of the file's zip archive (every CRC checked; PyTorch has saved zip files since 1.6).

`--base_url URL` (or $LOSSAGENT_WEIGHTS_BASE_URL) fetches every file as URL/<file name> instead, from a
mirror with a flat layout (and the tests' server on 127.0.0.1).

Not fetched here (not single files): Q-Align's Hugging Face model `q-future/one-align` and MANIQA's timm
backbone `vit_base_patch8_224`; `huggingface-cli download` them, or let pyiqa fetch them on a machine
with network and copy ~/.cache/huggingface (docs/reproduce.md).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = 'experiments/pretrained_models'
CHUNK = 1 << 20


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, default ~/.cache/torch/hub."""
    home = os.environ.get('TORCH_HOME') or os.path.join(os.environ.get('XDG_CACHE_HOME', '~/.cache'), 'torch')
    return Path(os.path.expanduser(home)) / 'hub'


@dataclass
class WeightFile:
    group: str
    url: str
    folder: str  # relative to the repository root, or under '{hub}' (torch.hub.get_dir())
    used_by: str
    sha256: str = ''  # full digest, when published
    sha256_prefix: str = ''  # torch.hub's convention: name-<first hex digits of sha256>.ext
    filename: str = ''  # saved under this name (default: the URL's)

    @property
    def name(self) -> str:
        return self.filename or self.url.rsplit('/', 1)[-1]

    def path(self) -> Path:
        folder = self.folder.replace('{hub}', str(torch_hub_dir()))
        return (Path(folder) if os.path.isabs(folder) else ROOT / folder) / self.name

    def check(self) -> str:
        """How this file is verified, in words (for --list)."""
        if self.sha256:
            return f'sha256 {self.sha256[:12]}...'
        if self.sha256_prefix:
            return f'sha256 prefix {self.sha256_prefix} (torch.hub file name)'
        return 'no published checksum: size + zip integrity'


SWINIR = 'https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/'
PYIQA = 'https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/'  # pyiqa 0.1.16's own store
CLIP_RN50 = (
    'https://openaipublic.azureedge.net/clip/models/'
    'afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt'
)

FILES = [
    WeightFile(
        'SwinIR',
        SWINIR + '001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth',
        PRETRAINED,
        'CISR_*.yml start; CISR "Pre-trained" rows',
    ),
    WeightFile(
        'SwinIR',
        SWINIR + '003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_PSNR.pth',
        PRETRAINED,
        'RISR_*.yml start; RISR "Pre-trained" row',
    ),
    WeightFile(
        'HAT',
        'https://github.com/XPixelGroup/HAT/releases/download/v0.0.0/HAT-S_SRx4.pth',
        PRETRAINED,
        'CISR_HAT-S_*.yml start and "Pre-trained" row',
    ),
    WeightFile(
        'MambaIRv2',
        'https://github.com/csguoh/MambaIR/releases/download/v1.0/mambairv2_lightSR_x4.pth',
        PRETRAINED,
        'CISR_MambaIRv2-light_*.yml start and "Pre-trained" row',
    ),
    WeightFile(
        'PromptIR',
        'https://github.com/va1shn9v/PromptIR/releases/download/v1.0/model.ckpt',
        PRETRAINED,
        'AIR_*.yml start (converted to PromptIR_allinone.pth)',
        filename='promptir_model.ckpt',
    ),
    WeightFile(
        'VGG',
        'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth',
        PRETRAINED,
        'the Perceptual loss (BasicSR VGG19)',
        sha256_prefix='dcbb9e9d',
    ),
    WeightFile(
        'LPIPS',
        'https://download.pytorch.org/models/vgg16-397923af.pth',
        '{hub}/checkpoints',
        'the LPIPS loss (AIR, M = 5); the linear heads ship in the lpips package',
        sha256_prefix='397923af',
    ),
    WeightFile('pyiqa', PYIQA + 'ckpt_koniq10k.pt', '{hub}/pyiqa', 'MANIQA (expert, metric)'),
    WeightFile(
        'pyiqa',
        CLIP_RN50,
        '{hub}/clip',
        'CLIPIQA (expert, metric, loss)',
        sha256='afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762',
    ),
    WeightFile('pyiqa', PYIQA + 'niqe_modelparameters.mat', '{hub}/pyiqa', 'NIQE (expert, metric, loss)'),
]
# PromptIR's release is a Lightning file; the AIR files load BasicSR's {'params': ...} (convert_checkpoint.py)
PROMPTIR_CONVERTED = 'PromptIR_allinone.pth'


class DownloadError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def verify(entry: WeightFile, path: Path, expected_size: int | None = None) -> str:
    """'' when `path` is the file `entry` names, else why not."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f'{size} bytes, the server announced {expected_size}'
    if entry.sha256 or entry.sha256_prefix:
        digest = sha256_of(path)
        want = entry.sha256 or entry.sha256_prefix
        return '' if digest.startswith(want) else f'sha256 {digest[:12]}... is not the published {want[:12]}...'
    if Path(entry.name).suffix in ('.pth', '.pt', '.ckpt'):  # `path` may be the .part file
        if not zipfile.is_zipfile(path):
            return 'not a zip archive (a PyTorch file is one): truncated or not a checkpoint'
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        return f'zip member {bad} fails its CRC' if bad else ''
    return ''


def fetch(entry: WeightFile, url: str, retries: int, timeout: float) -> str:
    """Download `url` to entry.path() through a `.part` file, resuming it; returns 'fetched' or 'resumed'."""
    dest = entry.path()
    part = dest.with_name(dest.name + '.part')
    dest.parent.mkdir(parents=True, exist_ok=True)
    resumed = part.exists() and part.stat().st_size > 0
    total = None
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={'User-Agent': 'lossagent-download'})
        if have:
            request.add_header('Range', f'bytes={have}-')
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if have and response.status == 206:
                    total = have + int(response.headers.get('Content-Length', 0)) or None
                    mode = 'ab'
                else:  # the server ignored the range: start over
                    length = response.headers.get('Content-Length')
                    total, mode = (int(length) if length else None), 'wb'
                with open(part, mode) as out:
                    while True:
                        block = response.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
            if total is not None and part.stat().st_size < total:
                raise http.client.IncompleteRead(b'', total - part.stat().st_size)
            break
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # the range starts at the end: the .part is complete
                break
            raise DownloadError(f'HTTP {err.code} from {url}') from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as err:
            if attempt == retries:
                size = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f'{type(err).__name__} after {retries + 1} tries ({size} bytes kept in '
                    f'{part.name}; run again to resume)'
                ) from None
            resumed = True
    problem = verify(entry, part, total)
    if problem:
        part.unlink()
        raise DownloadError(f'{problem}; the partial file was removed, run again')
    part.replace(dest)
    return 'resumed' if resumed else 'fetched'


def convert_promptir(ckpt_path: Path) -> str:
    sys.path.insert(0, str(ROOT / 'scripts'))
    import torch
    from convert_checkpoint import convert

    out = ckpt_path.with_name(PROMPTIR_CONVERTED)
    if out.exists():
        return f'{out.relative_to(ROOT)} present'
    params, _ = convert(torch.load(ckpt_path, map_location='cpu', weights_only=False), 'state_dict', 'net.')
    torch.save({'params': params}, out)
    return f'converted to {out.relative_to(ROOT)} ({len(params)} tensors)'


def display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = sorted({f.group for f in FILES})
    parser.add_argument('groups', nargs='*', help=f'only these groups ({", ".join(groups)}); default all')
    parser.add_argument('--list', action='store_true', help='print what would be fetched, fetch nothing')
    parser.add_argument(
        '--base_url',
        default=os.environ.get('LOSSAGENT_WEIGHTS_BASE_URL'),
        help='fetch every file as BASE_URL/<file name> (a mirror)',
    )
    parser.add_argument('--retries', type=int, default=3, help='resumed tries after a dropped connection')
    parser.add_argument('--timeout', type=float, default=60.0, help='seconds without data before a retry')
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in groups]
    if unknown:
        print(
            f'download_pretrained_models: unknown group {unknown[0]!r}; choose from {", ".join(groups)}',
            file=sys.stderr,
        )
        return 2
    selected = [f for f in FILES if not args.groups or f.group in args.groups]
    failed = 0
    for entry in selected:
        url = f'{args.base_url.rstrip("/")}/{entry.name}' if args.base_url else entry.url
        dest = entry.path()
        if args.list:
            print(f'{entry.group:10} {display(dest)}\n{"":10} from {url}\n{"":10} {entry.check()}; {entry.used_by}')
            continue
        try:
            if dest.exists() and not verify(entry, dest):
                status = 'ok'
            else:
                if dest.exists():
                    dest.unlink()  # present but not the published file: fetch it again
                status = fetch(entry, url, args.retries, args.timeout)
            extra = f'; {convert_promptir(dest)}' if entry.group == 'PromptIR' else ''
            print(f'{status:8} {display(dest)} ({dest.stat().st_size} bytes, {entry.check()}){extra}', flush=True)
        except DownloadError as err:
            failed += 1
            print(f'FAILED   {display(dest)}: {err}', flush=True)
    if args.list:
        print(
            "not fetched here: Q-Align (huggingface-cli download q-future/one-align), MANIQA's timm backbone "
            'vit_base_patch8_224 (pyiqa fetches both on first use)'
        )
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
