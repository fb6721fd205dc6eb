"""What every policy is: it turns the history of a run into the loss weights of the next stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lossagent_errors import OptionError

from ..record import ExpertInfo, History
from ..weights import check_weights


DECIDERS = ('policy', 'human', 'timeout')


@dataclass
class Decision:
    """A policy's answer at one boundary, with everything needed to audit it."""

    weights: dict[str, float]
    policy: str
    fallback: str | None = None  # why the previous weights were kept, if they were
    prompts: list[Any] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)
    latency_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    decided_by: str = 'policy'  # DECIDERS: 'human' or 'timeout' after agent.human_approval
    proposed_weights: dict[str, float] | None = None  # the policy's own weights, when a person was asked

    def to_dict(self) -> dict:
        return asdict(self)


class LossPolicy:
    """Subclasses implement `decide`; those with state (RNG, search state) also implement
    `state_dict` / `load_state_dict` with JSON-safe values so resume continues the same
    trajectory.
    """

    name = 'base'
    needs_probes = False  # True: the hook trains its candidates (propose/choose; lossagent_hook/lookahead_loop.py)

    def __init__(
        self,
        loss_names: list[str],
        initial_weights: list[float],
        experts: list[ExpertInfo],
        opt: dict | None = None,
        seed: int = 0,
        task: str = 'image super-resolution',
    ):
        if len(loss_names) != len(initial_weights):
            raise OptionError(
                f'agent.initial_weights: {len(initial_weights)} weights for {len(loss_names)} losses {list(loss_names)}'
            )
        self.loss_names = list(loss_names)
        self.initial_weights = dict(zip(loss_names, map(float, initial_weights)))
        problem = check_weights(self.initial_weights, self.loss_names)
        if problem:
            raise OptionError(f'agent.initial_weights: {problem}')
        self.experts = list(experts)
        self.opt = dict(opt or {})
        self.seed = int(seed)
        self.task = task

    @classmethod
    def check_options(cls, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        """Raise OptionError for any wrong option, before training starts. Policies whose constructor
        connects to something or loads something large override this to check without doing it."""
        cls(loss_names, initial_weights, experts, opt, seed, task).close()

    def decide(self, history: History) -> Decision:
        raise NotImplementedError

    def current_weights(self, history: History) -> dict[str, float]:
        return dict(history.last.weights) if history.last else dict(self.initial_weights)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def close(self) -> None:
        """Release clients, threads, files."""
