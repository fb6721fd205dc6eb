"""`calculate_iqa`: any pyiqa metric as a BasicSR validation metric (`val.metrics.<name>.type`).

    val:
      metrics:
        niqe: {type: calculate_iqa, metric: niqe, better: lower}

BasicSR's own `calculate_niqe` raises (an SVD that does not converge) on a nearly flat image and would
end the training run at a validation; this one logs a warning and gives NaN for that image instead, so a
bad image costs one point of the curve, never the run. Metric objects are built once per process.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from basicsr.utils import get_root_logger
from basicsr.utils.registry import METRIC_REGISTRY

_METRICS: dict = {}


@METRIC_REGISTRY.register()
def calculate_iqa(img, img2=None, metric='niqe', crop_border=0, **kwargs):
    """img, img2: uint8 BGR HWC arrays (BasicSR's validation); img2 (ground truth) only for FR metrics."""
    from lossagent_iqa import create_iqa_metric

    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if metric not in _METRICS:
        _METRICS[metric] = create_iqa_metric(metric, device=device, owner=f'val.metrics.{metric}')
    fn = _METRICS[metric]

    def to_tensor(a):
        if crop_border:
            a = a[crop_border:-crop_border, crop_border:-crop_border]
        return (
            torch.from_numpy(np.ascontiguousarray(a[:, :, ::-1].transpose(2, 0, 1))).float().div(255.0)[None].to(device)
        )

    try:
        with torch.no_grad():
            full_reference = getattr(fn, 'metric_mode', 'NR') == 'FR'
            score = fn(to_tensor(img), to_tensor(img2)) if full_reference else fn(to_tensor(img))
        value = float(score.reshape(-1)[0]) if torch.is_tensor(score) else float(score)
    except (np.linalg.LinAlgError, RuntimeError, ValueError) as err:
        value = math.nan
        get_root_logger().warning(f'val.metrics: {metric} failed on an image ({type(err).__name__}: {err}); NaN')
    return value
