"""pyiqa metrics created once, offline-friendly, with a clear error when weights are missing.

pyiqa fixes its weights folder (`$TORCH_HOME/hub/pyiqa`) when it is imported and downloads
missing files on first use. Without network that download fails deep inside pyiqa; here it
becomes one line naming the file to place and where.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from lossagent_errors import MissingWeightsError, OptionError, closest, unknown_key

NIQE_PARAMS = 'niqe_modelparameters.mat'


def pyiqa_weights_dir() -> Path:
    from pyiqa.utils import download_util

    return Path(download_util.DEFAULT_CACHE_DIR)


def seed_niqe_parameters(weights_dir: Path | None = None) -> Path:
    """Write NIQE's pristine-model parameters where pyiqa looks, from the copy BasicSR ships."""
    weights_dir = Path(weights_dir or pyiqa_weights_dir())
    target = weights_dir / NIQE_PARAMS
    if target.exists():
        return target
    import basicsr.metrics
    import scipy.io

    source = Path(basicsr.metrics.__file__).parent / 'niqe_pris_params.npz'
    if not source.exists():
        raise MissingWeightsError(f"NIQE needs {target}; BasicSR's copy {source} is missing too")
    params = np.load(source)
    weights_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix('.tmp.mat')
    scipy.io.savemat(
        tmp, {'mu_prisparam': params['mu_pris_param'].reshape(1, -1), 'cov_prisparam': params['cov_pris_param']}
    )
    os.replace(tmp, target)
    return target


@contextlib.contextmanager
def _report_downloads(requested: list):
    """Record the (url, path) pairs pyiqa tries to download, so a failure can name them."""
    from pyiqa.utils import download_util

    original = download_util.download_url_to_file

    def recording(url, dst, *args, **kwargs):
        requested.append((url, dst))
        return original(url, dst, *args, **kwargs)

    download_util.download_url_to_file = recording
    try:
        yield
    finally:
        download_util.download_url_to_file = original


# keywords of pyiqa's InferenceModel itself; the others go to the metric's network
INFERENCE_KEYWORDS = {'as_loss', 'loss_weight', 'loss_reduction', 'device', 'seed', 'check_input_range', 'metric_mode'}


def check_metric_options(metric_name, kwargs: dict, owner: str, own_keys: tuple = ()) -> None:
    """The metric exists in pyiqa and takes every keyword in `kwargs` (checked without building it);
    `own_keys` are the caller's keys beside the metric's, named in the error's list."""
    import inspect
    from pyiqa.archs import ARCH_REGISTRY
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    if metric_name not in DEFAULT_CONFIGS:
        raise OptionError(
            f"{owner}: unknown pyiqa metric '{metric_name}'{closest(str(metric_name), DEFAULT_CONFIGS)}; "
            f'see pyiqa.list_models() (e.g. niqe, piqe, clipiqa, maniqa, qalign, psnr, ssim, lpips)'
        )
    if not kwargs:
        return
    network = DEFAULT_CONFIGS[metric_name]['metric_opts']['type']
    try:
        if network not in ARCH_REGISTRY:  # pyiqa imports its networks lazily, as build_network does
            from pyiqa.archs import _lazy_import_arch

            _lazy_import_arch(network)
        params = inspect.signature(ARCH_REGISTRY.get(network).__init__).parameters
    except Exception:  # noqa: BLE001 -- another pyiqa version: pyiqa itself checks when it builds the metric
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    known = (set(params) - {'self'}) | INFERENCE_KEYWORDS | set(own_keys)
    for key in kwargs:
        if key not in known:
            raise unknown_key(owner, key, known)


def create_iqa_metric(metric_name: str, device='cpu', owner: str = 'expert', **kwargs):
    """`pyiqa.create_metric` in eval mode; `owner` names the option key in error messages."""
    import pyiqa

    check_metric_options(metric_name, kwargs, owner)
    if metric_name == 'niqe' and 'pretrained_model_path' not in kwargs:
        seed_niqe_parameters()
    requested: list = []
    try:
        with _report_downloads(requested):
            metric = pyiqa.create_metric(metric_name, device=device, **kwargs)
    except Exception as err:  # pyiqa raises anything from URLError to HF hub errors offline
        if requested:
            url, dst = requested[-1]
            raise MissingWeightsError(
                f"{owner}: pyiqa metric '{metric_name}' needs {Path(dst).name}, which is not on disk and "
                f'could not be downloaded ({type(err).__name__}); place it at {dst} (from {url}) '
                f'or pass pretrained_model_path'
            ) from err
        raise MissingWeightsError(
            f"{owner}: pyiqa metric '{metric_name}' could not be created ({type(err).__name__}: {err}); "
            f'if it needs weights, place them under {pyiqa_weights_dir()} (pyiqa), '
            f'{pyiqa_weights_dir().parent / "clip"} (CLIP backbones) or the Hugging Face cache'
        ) from err
    metric.eval()  # MANIQA crops at random in train mode
    return metric
