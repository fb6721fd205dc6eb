"""Which way a metric goes where pyiqa is installed: agent/directions.py's one resolution, with
pyiqa's own `lower_better` beside the table (for the metrics the table does not list)."""

from __future__ import annotations

from agent.directions import lower_better


def pyiqa_directions() -> dict[str, bool]:
    """pyiqa's `lower_better` of every metric it can create (the value its metric objects carry)."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    return {name: bool(config.get('lower_better', False)) for name, config in DEFAULT_CONFIGS.items()}


def lower_is_better(metric_name: str, key: str = 'metric', override=None) -> bool:
    """`override` when given, else the direction table, else pyiqa's; an OptionError naming `key` when
    neither knows the metric."""
    return lower_better(metric_name, key, override, pyiqa_directions())
