"""The stage hook's side of the lookahead policy (agent/lookahead_policy.py): probing candidates.

At a boundary the training state is copied (the model's `take_snapshot`) and the first
candidate -- the current weights -- trains on in the main loop for `probe_iters` iterations while
each iteration's inputs and learning rates are kept. At the end of the window the other candidates
are replayed from the copy on those very inputs with the same learning rates and the same
per-iteration random numbers (`train_step` seeds itself by iteration), each is scored, the policy
chooses, and training continues from the winner's state. Every process replays the same
candidates in lockstep (DDP all-reduces their gradients as usual); only rank 0 scores and
chooses, and the winner is broadcast.

A training state saved inside the window holds the copy, the inputs so far and the candidates,
so a run killed there and resumed with one process ends exactly where an uninterrupted one does;
with several processes the other ranks' inputs are not in rank 0's state, so a resumed probe is
given up and the first candidate kept (the record says so).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from lossagent_errors import OptionError


def check_lookahead(policy_opt: dict, stage_iters: int, async_decisions: bool) -> None:
    """What the policy cannot see on its own: its window must fit in a stage, and decisions are synchronous."""
    if (policy_opt or {}).get('type') != 'lookahead':
        return
    probe_iters = policy_opt.get('probe_iters', 10)
    if isinstance(probe_iters, int) and not isinstance(probe_iters, bool) and probe_iters >= stage_iters:
        raise OptionError(f'agent.policy.probe_iters: {probe_iters} must be smaller than agent.stage_iters '
                          f'({stage_iters}): the winner trains on for the rest of the stage')
    if async_decisions:
        raise OptionError('agent.async: the lookahead policy trains its candidates at the boundary; '
                          'it cannot decide asynchronously (set agent.async: false)')


@dataclass
class Probe:
    """One boundary's probing window, [boundary + 1, boundary + probe_iters]."""
    boundary: int
    probe_iters: int
    candidates: list[dict]
    start: dict                                      # the training state at the boundary
    inputs: list[dict] = field(default_factory=list)  # each window iteration's training inputs
    lrs: list = field(default_factory=list)          # and learning rates, as the main loop set them

    @property
    def end(self) -> int:
        return self.boundary + self.probe_iters

    def keep_step(self, model) -> None:
        self.inputs.append(dict(model.training_inputs()))
        self.lrs.append(model.learning_rates())

    def state_dict(self) -> dict:
        return {'boundary': self.boundary, 'probe_iters': self.probe_iters, 'candidates': self.candidates,
                'start': self.start, 'inputs': self.inputs, 'lrs': self.lrs}

    @classmethod
    def from_state(cls, state: dict) -> 'Probe':
        return cls(**state)


def start_probe(model, boundary: int, probe_iters: int, candidates: list[dict]) -> Probe:
    """Copy the state; the first candidate then trains on in the main loop."""
    model.losses.set_weights(candidates[0])
    return Probe(boundary, probe_iters, candidates, model.take_snapshot())


def replay(model, probe: Probe, weights: dict) -> bool:
    """Train `weights` through the window from the boundary's state; False if an update was skipped
    (non-finite loss or gradients)."""
    model.restore_snapshot(probe.start)
    model.losses.set_weights(weights)
    skipped = model.skipped_updates
    for offset, (inputs, lrs) in enumerate(zip(probe.inputs, probe.lrs), 1):
        model.set_learning_rates(lrs)
        model.set_training_inputs(inputs)
        model.train_step(probe.boundary + offset)
    return model.skipped_updates == skipped


def finish_on(model, probe: Probe, ends: list[dict], logs: list[Optional[dict]], winner: int) -> None:
    """Continue from the winner's end state with its weights (and its iteration log)."""
    model.restore_snapshot(ends[winner])
    model.losses.set_weights(probe.candidates[winner])
    if logs[winner] is not None:
        model.log_dict = logs[winner]
    model.set_learning_rates(probe.lrs[-1])
