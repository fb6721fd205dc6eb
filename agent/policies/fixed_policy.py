"""The paper's 'Fixed' baseline: the initial weights for the whole run."""

from ..record import History
from .base import Decision, LossPolicy
from .registry import register_policy


@register_policy('fixed')
class FixedPolicy(LossPolicy):
    def decide(self, history: History) -> Decision:
        return Decision(weights=dict(self.initial_weights), policy=self.name)
