"""The vocabulary shared by every policy: experts, stage records, history, decisions.

Everything here is JSON-safe plain Python so it can go into `decisions.jsonl` and into
BasicSR's training state (loaded with `torch.load(weights_only=True)`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

Score = Union[float, str, None]  # a number, a text critique, or None when invalid


class OptionError(ValueError):
    """A wrong option in the YAML; the message names the key. Reported as one line at start-up."""


class AgentConfigError(OptionError):
    """A bad `agent.*` option, raised at construction; the message names the key."""


@dataclass(frozen=True)
class ExpertInfo:
    """What a policy knows about one expert: its name and which way is better."""
    name: str
    lower_better: bool = False
    kind: str = 'score'  # 'score' (a number per image) or 'text' (a critique per image)

    @property
    def direction(self) -> str:
        return 'lower is better' if self.lower_better else 'higher is better'


@dataclass
class StageRecord:
    """One stage boundary: the weights trained with up to `iteration`, and what the experts said.

    `scores[expert][i]` is image i's score; None marks an invalid (NaN, failed) score.
    Stage 0 is the evaluation before any training with the agent.
    """
    stage: int
    iteration: int
    weights: dict[str, float]
    scores: dict[str, list[Score]]

    def num_images(self) -> int:
        return max((len(v) for v in self.scores.values()), default=0)

    def mean_scores(self) -> dict[str, Optional[float]]:
        return {name: mean_of_numbers(values) for name, values in self.scores.items()}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> 'StageRecord':
        return cls(stage=int(d['stage']), iteration=int(d['iteration']),
                   weights={k: float(v) for k, v in d['weights'].items()},
                   scores={k: list(v) for k, v in d['scores'].items()})


@dataclass
class History:
    """The whole trajectory so far, oldest first."""
    records: list[StageRecord] = field(default_factory=list)

    def append(self, record: StageRecord) -> None:
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    @property
    def last(self) -> Optional[StageRecord]:
        return self.records[-1] if self.records else None

    def to_list(self) -> list[dict]:
        return [r.to_dict() for r in self.records]

    @classmethod
    def from_list(cls, items: list[dict]) -> 'History':
        return cls([StageRecord.from_dict(d) for d in items])


@dataclass
class Decision:
    """A policy's answer at one boundary, with everything needed to audit it."""
    weights: dict[str, float]
    policy: str
    fallback: Optional[str] = None      # why the previous weights were kept, if they were
    prompts: list[Any] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)
    latency_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def is_number(value) -> bool:
    """A usable score: a finite int/float (not a bool, not a text critique, not None)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_of_numbers(values) -> Optional[float]:
    numbers = [float(v) for v in values if is_number(v)]
    return sum(numbers) / len(numbers) if numbers else None


class LossPolicy:
    """Turns the history of a run into the loss weights of the next stage.

    Subclasses implement `decide`; those with state (RNG, search state) also implement
    `state_dict` / `load_state_dict` with JSON-safe values so resume continues the same
    trajectory.
    """
    name = 'base'

    def __init__(self, loss_names: list[str], initial_weights: list[float],
                 experts: list[ExpertInfo], opt: Optional[dict] = None, seed: int = 0,
                 task: str = 'image super-resolution'):
        if len(loss_names) != len(initial_weights):
            raise ValueError(f'{len(loss_names)} loss names but {len(initial_weights)} initial weights')
        self.loss_names = list(loss_names)
        self.initial_weights = dict(zip(loss_names, map(float, initial_weights)))
        self.experts = list(experts)
        self.opt = dict(opt or {})
        self.seed = int(seed)
        self.task = task

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
