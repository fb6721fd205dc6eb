"""Any differentiable pyiqa metric as a training loss (paper Appendix A.3.2, Table 9: "Add CLIPIQA/NIQE").

    losses:
      CLIPIQA: {type: PyIQALoss, metric: clipiqa, loss_weight: 0.1}   # higher is better: maximised
      NIQE:    {type: PyIQALoss, metric: niqe, loss_weight: 0.01}     # lower is better: minimised

The loss is `loss_weight * reduce(sign * metric(pred[, target]))` with sign +1 for a lower-better
metric and -1 for a higher-better one (pyiqa's own `lower_better`), so a smaller loss is always a
better score; the logged value of a higher-better metric is therefore its negated score.
`loss_weight` is an entry of the loss repository like any other: the agent sees and sets it.
No-reference metrics ignore the target; full-reference ones (ssim, lpips, dists, ...) compare with it.
"""

from __future__ import annotations

import torch
from torch import nn

from basicsr.utils.registry import LOSS_REGISTRY
from lossagent_errors import OptionError
from lossagent_iqa import check_metric_options, create_iqa_metric, lower_is_better

REDUCTIONS = ('mean', 'sum')


@LOSS_REGISTRY.register()
class PyIQALoss(nn.Module):
    """`loss_weight * reduce(sign * metric(pred[, target]))`: lower is always better (module docstring)."""

    def __init__(
        self, metric: str, loss_weight: float = 1.0, reduction: str = 'mean', metric_options: dict | None = None
    ):
        super().__init__()
        self.check_options('PyIQALoss', {'metric': metric, 'reduction': reduction, 'metric_options': metric_options})
        self.metric_name = metric
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.sign = 1.0 if lower_is_better(metric, f'PyIQALoss({metric})') else -1.0
        # as_loss: pyiqa computes with gradients and skips its [0, 1] input assertion; no weighting or
        # reduction on pyiqa's side (ours is the weight the agent sets)
        self.metric = create_iqa_metric(
            metric,
            device='cpu',
            owner=f'PyIQALoss({metric})',
            as_loss=True,
            loss_weight=None,
            loss_reduction='none',
            **(metric_options or {}),
        )
        self.full_reference = self.metric.metric_mode == 'FR'
        for p in self.metric.parameters():
            p.requires_grad = False

    @staticmethod
    def check_options(owner: str, options: dict) -> None:
        """What the constructor checks, without building the metric (the loss repository's `loss_spec`
        calls it at start-up with `owner` = the option key)."""
        if options.get('reduction', 'mean') not in REDUCTIONS:
            raise OptionError(f'{owner}.reduction: got {options["reduction"]!r}; allowed values are {list(REDUCTIONS)}')
        extra = options.get('metric_options') or {}
        if not isinstance(extra, dict):
            raise OptionError(f'{owner}.metric_options: got {extra!r}; expected a mapping of pyiqa metric options')
        for key in ('as_loss', 'loss_weight', 'loss_reduction', 'device'):
            if key in extra:
                raise OptionError(f'{owner}.metric_options.{key}: set by PyIQALoss itself; remove it')
        metric = options.get('metric')
        if not isinstance(metric, str):
            raise OptionError(f'{owner}.metric: got {metric!r}; expected a pyiqa metric name (e.g. niqe, clipiqa)')
        check_metric_options(metric, {}, f'{owner}.metric')
        check_metric_options(metric, extra, f'{owner}.metric_options')

    def forward(self, pred: torch.Tensor, target: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if self.full_reference and target is None:
            raise ValueError(f"PyIQALoss: '{self.metric_name}' is a full-reference metric and needs the target")
        with torch.autocast(pred.device.type, enabled=False):  # pyiqa's networks expect float32
            pred = pred.float()
            scores = self.metric(pred, target.float()) if self.full_reference else self.metric(pred)
        if pred.requires_grad and scores.grad_fn is None:
            raise RuntimeError(
                f"PyIQALoss: pyiqa metric '{self.metric_name}' gives no gradient; "
                'use a differentiable metric (e.g. niqe, clipiqa, musiq, ssim, lpips)'
            )
        scores = self.sign * scores.reshape(-1)  # one score per image (a batch of one may give a 0-d tensor)
        reduced = scores.mean() if self.reduction == 'mean' else scores.sum()
        return self.loss_weight * reduced

    def train(self, mode: bool = True):
        super().train(mode)
        self.metric.eval()  # MANIQA and others crop at random in train mode
        return self
