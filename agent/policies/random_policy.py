"""The paper's 'Random' baseline: a fresh random draw of the weights at every stage.

Each weight is `initial * U(low, high)` (or log-uniform between initial*low and
initial*high with `log_uniform: true`), independent of the scores. The RNG state is in
`state_dict`, so a resumed run continues the same sequence of draws.
"""

from __future__ import annotations

import math

from lossagent_errors import OptionError
from ..record import History
from .base import Decision, LossPolicy
from ..options import flag, pair, read_options
from .registry import register_policy
from .rng import JsonRandom

RANDOM_DEFAULTS = {
    'range': [0.5, 1.5],  # multipliers of the initial weights
    'log_uniform': False,  # draw the multiplier uniformly in log space instead
    'anchor': False,  # keep the first loss at its initial weight
}


@register_policy('random')
class RandomPolicy(LossPolicy):
    def __init__(self, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        super().__init__(loss_names, initial_weights, experts, opt, seed, task)
        o = read_options(self.opt, RANDOM_DEFAULTS)
        self.low, self.high = pair(o, 'range')
        if self.low < 0 or (o['log_uniform'] and self.low <= 0):
            raise OptionError(f'agent.policy.range: got {o["range"]}; multipliers must be >= 0 (> 0 with log_uniform)')
        self.log_uniform = flag(o, 'log_uniform')
        self.anchor = flag(o, 'anchor')
        self.rng = JsonRandom(self.seed)

    def _multiplier(self) -> float:
        if self.log_uniform:
            return math.exp(self.rng.uniform(math.log(self.low), math.log(self.high)))
        return self.rng.uniform(self.low, self.high)

    def decide(self, history: History) -> Decision:
        weights = {}
        for i, name in enumerate(self.loss_names):
            m = self._multiplier()  # drawn even for the anchor so `anchor` does not shift the sequence
            weights[name] = (
                self.initial_weights[name]
                if (self.anchor and i == 0)
                else float(f'{self.initial_weights[name] * m:.6g}')
            )
        if not any(weights.values()):  # all-zero initial weights cannot be scaled into a usable loss
            return Decision(
                weights=self.current_weights(history), policy=self.name, fallback='all drawn weights are zero'
            )
        return Decision(weights=weights, policy=self.name, info={'range': [self.low, self.high]})

    def state_dict(self) -> dict:
        return {'rng': self.rng.state()}

    def load_state_dict(self, state: dict) -> None:
        if state and 'rng' in state:
            self.rng.set_state(state['rng'])
