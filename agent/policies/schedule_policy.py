"""A fixed two-phase schedule: the initial weights until `switch_at`, then `then` (the policy study's
"headroom for adaptivity": does any schedule beat the best constant weights?).

    policy: {type: schedule, switch_at: 150, then: {GAN: 0.001}}

`then` names the losses whose weight changes (absolute weights; unnamed losses keep their initial
weight). The switch happens at the first stage boundary at or after iteration `switch_at`, so
`switch_at` should be a multiple of `agent.stage_iters`. Scores are never read.
"""

from __future__ import annotations

from lossagent_errors import OptionError

from ..options import number, read_options
from ..record import History
from ..weights import check_weights
from .base import Decision, LossPolicy
from .registry import register_policy

SCHEDULE_DEFAULTS = {
    'switch_at': None,  # the iteration from which `then` applies
    'then': None,  # {loss name: weight} after the switch
}


@register_policy('schedule')
class SchedulePolicy(LossPolicy):
    def __init__(self, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        super().__init__(loss_names, initial_weights, experts, opt, seed, task)
        o = read_options(self.opt, SCHEDULE_DEFAULTS)
        if o['switch_at'] is None or not isinstance(o['then'], dict) or not o['then']:
            raise OptionError(
                'agent.policy: the schedule policy needs switch_at (an iteration) and then ({loss: weight})'
            )
        self.switch_at = number(o, 'switch_at', 1, 10**9, integer=True)
        unknown = sorted(set(o['then']) - set(self.loss_names))
        if unknown:
            raise OptionError(f'agent.policy.then: unknown losses {unknown}; the losses are {self.loss_names}')
        self.after = {**self.initial_weights, **{k: float(v) for k, v in o['then'].items()}}
        problem = check_weights(self.after, self.loss_names)
        if problem:
            raise OptionError(f'agent.policy.then: {problem}')

    def decide(self, history: History) -> Decision:
        switched = history.last is not None and history.last.iteration >= self.switch_at
        return Decision(
            weights=dict(self.after if switched else self.initial_weights),
            policy=self.name,
            info={'phase': 2 if switched else 1},
        )
