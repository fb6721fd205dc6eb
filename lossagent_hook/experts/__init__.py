"""Experts: score the network's restorations of the agent's validation images.

YAML (`agent.experts`), a mapping of the name the LLM sees to its options (the one grammar,
`agent.experts.expert_entries`):

    experts:
      NIQE: {metric: niqe}                       # any pyiqa metric; direction from agent/directions.py or pyiqa
      PSNR: {metric: psnr, test_y_channel: true, crop_border: 4}   # full-reference: uses the GT
      Q-Align: {metric: qalign, lower_better: false}               # direction overridable

Keys other than `type`, `metric`, `lower_better` and `weight` go to `pyiqa.create_metric` (and must
be keywords the metric takes). Metric objects are created once per run. Text experts put words in
the prompt where a score would be:

      Critic: {type: critique, base_url: http://127.0.0.1:8001/v1, model: Qwen/Qwen2.5-VL-7B-Instruct}
      Human:  {type: human, timeout_s: 0, file: ~}   # reads experiments/<name>/agent/stage_<k>/feedback.txt

A new kind of expert is a file `<kind>_expert.py` here with a class registered by
`@register_expert('kind')` (every `*_expert.py` is imported below, as BasicSR scans `*_arch.py`);
its `check_options(name, opt)` validates the options without building anything (the start-up check
runs it before any folder is made), and its constructor takes `(info, opt, device)`.
"""

from __future__ import annotations

from agent.experts import expert_entries
from agent.registry import import_modules

from .base import EXPERT_REGISTRY, Expert, ExpertSpec, register_expert

EXPERT_MODULES = import_modules(__file__, __name__, 'expert')


def check_experts(experts_opt) -> list[ExpertSpec]:
    """The experts of `agent.experts`, validated without building them."""
    specs = []
    for name, opt in expert_entries(experts_opt):
        cls = EXPERT_REGISTRY.get(opt.pop('type', 'iqa'), key=f'agent.experts.{name}.type')
        specs.append(ExpertSpec(cls.check_options(name, opt), cls, opt))
    return specs


def build_experts(experts_opt, device) -> list[Expert]:
    """The experts of a raw `agent.experts` mapping, checked and built (the stage hook builds from the
    specs the start-up check made: `spec.build(device)`)."""
    return [spec.build(device) for spec in check_experts(experts_opt)]


__all__ = ['EXPERT_REGISTRY', 'Expert', 'ExpertSpec', 'build_experts', 'check_experts', 'register_expert']
