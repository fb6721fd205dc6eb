"""`type: iqa` (the default): a pyiqa metric scores each restoration; full-reference metrics use the GT."""

from __future__ import annotations

import math

import torch

from agent.experts import expert_weight
from agent.record import ExpertInfo
from lossagent_errors import OptionError
from lossagent_iqa import check_metric_options, create_iqa_metric, lower_is_better

from ..validation_set import equal_runs
from .base import Expert, register_expert

OWN_KEYS = ('type', 'metric', 'lower_better', 'weight')  # the others go to pyiqa.create_metric


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _same_shape_batches(outputs, gts):
    """Consecutive images of one shape go through a metric together (gts None: no ground truth)."""
    shapes = [(out.shape, None if gt is None else gt.shape) for out, gt in zip(outputs, gts)]
    for start, end in equal_runs(shapes):
        yield torch.stack(outputs[start:end]), None if gts[start] is None else torch.stack(gts[start:end])


@register_expert('iqa')
class IQAExpert(Expert):
    """A pyiqa metric; full-reference metrics compare with the ground truth."""

    def __init__(self, info: ExpertInfo, opt: dict, device):
        super().__init__(info)
        metric = opt.pop('metric')
        for key in OWN_KEYS:
            opt.pop(key, None)
        self.metric = create_iqa_metric(metric, device=device, owner=f'agent.experts.{info.name}', **opt)
        self.metric_name = metric
        self.full_reference = getattr(self.metric, 'metric_mode', 'NR') == 'FR'

    @classmethod
    def check_options(cls, name: str, opt: dict) -> ExpertInfo:
        opt = dict(opt)
        key = f'agent.experts.{name}'
        metric = opt.pop('metric', None)
        if not metric:
            raise OptionError(f'{key}.metric: missing (a pyiqa metric name such as niqe)')
        lower = opt.pop('lower_better', None)
        if lower is not None and not isinstance(lower, bool):
            raise OptionError(f'{key}.lower_better: got {lower!r}; expected true or false')
        weight = expert_weight(name, opt.pop('weight', 1.0))
        check_metric_options(metric, opt, key, own_keys=OWN_KEYS)
        return ExpertInfo(str(name), lower_is_better(metric, f'{key}.lower_better', lower), 'score', weight)

    @torch.no_grad()
    def score(self, outputs, gts, context):
        scores = []
        for batch_out, batch_gt in _same_shape_batches(outputs, gts):
            batch_out = batch_out.clamp(0, 1)  # pyiqa asserts inputs in [0, 1]
            value = self.metric(batch_out, batch_gt.clamp(0, 1)) if self.full_reference else self.metric(batch_out)
            scores.extend(_finite_or_none(float(v)) for v in value.detach().reshape(-1).cpu())
        return scores
