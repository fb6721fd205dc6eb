"""Which way each image-quality metric goes: the one direction table and the one way to read it.

`lower_better` is the only function that answers "is lower better?" for a metric: an explicit
option wins, else this table, else the caller's extra table (pyiqa's own, passed by
lossagent_iqa where pyiqa is installed), else an OptionError naming the key -- a wrong direction
silently trains the wrong way, so an unknown metric never defaults. The table agrees with pyiqa on
every name both know (`tests/test_glue_units.py`), so where a name is looked up first changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from lossagent_errors import OptionError

LOWER_BETTER = {
    # no-reference
    'niqe': True,
    'niqe_matlab': True,
    'ilniqe': True,
    'brisque': True,
    'brisque_matlab': True,
    'piqe': True,
    'pi': True,
    'nrqm': False,
    'clipiqa': False,
    'clipiqa+': False,
    'maniqa': False,
    'qalign': False,
    'musiq': False,
    'hyperiqa': False,
    'topiq_nr': False,
    'dbcnn': False,
    'paq2piq': False,
    'nima': False,
    'liqe': False,
    'arniqa': False,
    'cnniqa': False,
    'wadiqam_nr': False,
    'unique': False,
    'tres': False,
    # full-reference
    'psnr': False,
    'psnry': False,
    'ssim': False,
    'ssimc': False,
    'ms_ssim': False,
    'cw_ssim': False,
    'fsim': False,
    'vif': False,
    'vsi': False,
    'gmsd': True,
    'nlpd': True,
    'mad': True,
    'lpips': True,
    'lpips-vgg': True,
    'lpips+': True,
    'lpips-vgg+': True,
    'dists': True,
    'pieapp': True,
    'ahiq': False,
    'ckdn': False,
    'topiq_fr': False,
    'wadiqam_fr': False,
    # distribution
    'fid': True,
}


def known_direction(metric: str | None, extra: Mapping[str, bool] | None = None) -> bool | None:
    """lower_better for a metric name (the table case-insensitive, then `extra`), None if neither knows it."""
    if not metric:
        return None
    lower = LOWER_BETTER.get(str(metric).lower())
    if lower is None and extra is not None and metric in extra:
        lower = bool(extra[metric])
    return lower


def lower_better(metric, key: str, override=None, extra: Mapping[str, bool] | None = None) -> bool:
    """Whether lower is better for `metric`: `override` (the option `lower_better`) when given, else
    the table, else `extra`; an OptionError naming `key` (the `lower_better` option) otherwise."""
    if override is not None:
        if not isinstance(override, bool):
            raise OptionError(f'{key}: got {override!r}; expected true or false')
        return override
    lower = known_direction(metric, extra)
    if lower is None:
        raise OptionError(f'{key}: unknown metric {metric!r}; say whether lower is better')
    return lower
