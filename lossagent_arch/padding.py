"""Inputs a windowed network can take: pad an image so its sides divide by the window size.

Used wherever a network restores whole images (HAT's own forward, the stage hook's validation
images, the benchmark); not an `*_arch.py` file, so the package does not auto-import it.
"""

import torch.nn.functional as F


def pad_to_multiple(x, multiple):
    """Reflect-pad the bottom/right of (b, c, h, w) so h and w divide by `multiple` (as HAT's test does).

    Returns the padded tensor and the original (h, w) so the caller can crop the output.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        # reflect needs pad < size; tiny inputs fall back to replicate
        mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (h, w)
