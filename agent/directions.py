"""Which way each image-quality metric goes: the one direction table.

pyiqa's own `lower_better` is authoritative where pyiqa is installed and asked (the stage hook and
test.py ask it); this table serves the pure-Python agent (reading logs, replaying, checking options
without pyiqa) and agrees with pyiqa on every name both know (`tests/test_glue_units.py`).
"""
from __future__ import annotations

from typing import Optional

LOWER_BETTER = {
    # no-reference
    'niqe': True, 'niqe_matlab': True, 'ilniqe': True, 'brisque': True, 'brisque_matlab': True, 'piqe': True,
    'pi': True, 'nrqm': False, 'clipiqa': False, 'clipiqa+': False, 'maniqa': False, 'qalign': False,
    'musiq': False, 'hyperiqa': False, 'topiq_nr': False, 'dbcnn': False, 'paq2piq': False, 'nima': False,
    'liqe': False, 'arniqa': False, 'cnniqa': False, 'wadiqam_nr': False, 'unique': False, 'tres': False,
    # full-reference
    'psnr': False, 'psnry': False, 'ssim': False, 'ssimc': False, 'ms_ssim': False, 'cw_ssim': False,
    'fsim': False, 'vif': False, 'vsi': False, 'gmsd': True, 'nlpd': True, 'mad': True, 'lpips': True,
    'lpips-vgg': True, 'lpips+': True, 'lpips-vgg+': True, 'dists': True, 'pieapp': True, 'ahiq': False,
    'ckdn': False, 'topiq_fr': False, 'wadiqam_fr': False,
    # distribution
    'fid': True,
}


def known_direction(metric: Optional[str]) -> Optional[bool]:
    """lower_better for a metric name (case-insensitive), None if the table does not know it."""
    return LOWER_BETTER.get(str(metric).lower()) if metric else None
