"""Image-quality metrics for every package that scores or trains with them: the pyiqa metric factory
(created once, offline-friendly, options checked without building) and which way each metric goes.
Below the losses, the stage hook and the benchmark, which all import it; above `agent` only.

    metrics.py     create_iqa_metric, check_metric_options, NIQE's parameters from BasicSR's copy
    directions.py  lower_is_better: agent/directions.py's table, with pyiqa's own beside it
"""

import lossagent_compat  # noqa: F401  (before basicsr)

from .directions import lower_is_better
from .metrics import check_metric_options, create_iqa_metric

__all__ = ['check_metric_options', 'create_iqa_metric', 'lower_is_better']
