"""Each stage's restorations of the validation images as PNG files, beside their LQ and GT.

With `agent.stage_images: true` (the default) every boundary writes the network's outputs to
`experiments/<name>/agent/stage_<k>/00_<image>.png`, ...; the first one also writes the inputs
and the ground truth once to `agent/validation/` with a manifest `images.json` (layout:
agent/stage_files.py). The run board shows them side by side; any image viewer can too. The
images are written right after the restore pass, before the experts run, so a person asked for
feedback (the `human` expert) sees them while the run waits.

Cost, measured on the project's 2-core CPU machine while it was busy (load 4): ~10 ms per 192-px PNG,
so ~0.1 s per boundary for 10 validation crops (the first one ~0.3 s more for the LQ and GT); against
a stage of thousands of iterations that is nothing, which is why it is on by default.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import torch

from agent.stage_files import MANIFEST, VALIDATION, image_file, read_json, stage_dir, write_atomic, write_json
from basicsr.utils import tensor2img

PNG_COMPRESSION = 1  # zlib level: fast; these files are for looking at, not for archiving


def png_bytes(image: torch.Tensor) -> bytes:
    """A CHW float image in [0, 1] (RGB) as PNG bytes."""
    ok, buffer = cv2.imencode(
        '.png', tensor2img(image.detach().float().cpu()), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    )
    if not ok:
        raise RuntimeError('could not encode a validation image as PNG')
    return buffer.tobytes()


def write_outputs(folder: Path, names: list[str], outputs: list[torch.Tensor]) -> list[str]:
    """`folder/00_<stem>.png`, ... for the restorations; the file names, in order."""
    files = [image_file(i, name) for i, name in enumerate(names)]
    for file, image in zip(files, outputs):
        write_atomic(folder / file, png_bytes(image))
    return files


def write_validation(
    agent_dir: Path, names: list[str], lqs: list[torch.Tensor], gts: list[torch.Tensor | None]
) -> None:
    """LQ and GT once per run (again only if the validation images changed)."""
    manifest_path = agent_dir / VALIDATION / MANIFEST
    manifest = read_json(manifest_path)
    if isinstance(manifest, dict) and [i.get('name') for i in manifest.get('images', [])] == list(names):
        return
    images = []
    for i, (name, lq, gt) in enumerate(zip(names, lqs, gts)):
        file = image_file(i, name)
        write_atomic(agent_dir / VALIDATION / f'lq_{file}', png_bytes(lq))
        if gt is not None:
            write_atomic(agent_dir / VALIDATION / f'gt_{file}', png_bytes(gt))
        images.append(
            {
                'name': str(name),
                'file': file,
                'lq': f'{VALIDATION}/lq_{file}',
                'gt': f'{VALIDATION}/gt_{file}' if gt is not None else None,
            }
        )
    write_json(manifest_path, {'images': images})


def write_stage_images(agent_dir, stage: int, val_set, outputs: list[torch.Tensor], enabled: bool = True) -> None:
    """What the stage hook calls after restoring the validation images of `stage`."""
    if not enabled:
        return
    agent_dir = Path(agent_dir)
    write_validation(agent_dir, list(val_set.names), val_set.lqs, val_set.gts)
    write_outputs(stage_dir(agent_dir, stage), list(val_set.names), outputs)
