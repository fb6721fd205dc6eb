"""The lookahead loop: probing the candidates of a policy with `needs_probes` (agent/lookahead_policy.py).

The stage hook says when a window opens (a boundary) and hands each iteration in; this loop owns
the window: the proposal, the copy, the replays, the scores, the choice and the resume.

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

import json
import time
from dataclasses import dataclass, field
from collections.abc import Callable

from agent import History
from agent.record import ProbeResult, StageRecord


@dataclass
class Probe:
    """One boundary's probing window, [boundary + 1, boundary + probe_iters]."""

    boundary: int
    probe_iters: int
    candidates: list[dict]
    start: dict  # the training state at the boundary
    inputs: list[dict] = field(default_factory=list)  # each window iteration's training inputs
    lrs: list = field(default_factory=list)  # and learning rates, as the main loop set them

    @property
    def end(self) -> int:
        return self.boundary + self.probe_iters

    def keep_step(self, model) -> None:
        self.inputs.append(dict(model.training_inputs()))
        self.lrs.append(model.learning_rates())

    def state_dict(self) -> dict:
        return {
            'boundary': self.boundary,
            'probe_iters': self.probe_iters,
            'candidates': self.candidates,
            'start': self.start,
            'inputs': self.inputs,
            'lrs': self.lrs,
        }

    @classmethod
    def from_state(cls, state: dict) -> Probe:
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


def finish_on(model, probe: Probe, ends: list[dict], logs: list[dict | None], winner: int) -> None:
    """Continue from the winner's end state with its weights (and its iteration log)."""
    model.restore_snapshot(ends[winner])
    model.losses.set_weights(probe.candidates[winner])
    if logs[winner] is not None:
        model.log_dict = logs[winner]
    model.set_learning_rates(probe.lrs[-1])


class LookaheadLoop:
    """All ranks probe the same candidates in lockstep; rank 0 proposes, scores and chooses.

    `broadcast(message)` gives every rank rank 0's message; `score(model, network)` is rank 0's
    (scores, errors) of the score experts on `network` now.
    """

    def __init__(self, policy, loss_names: list[str], rank: int, broadcast: Callable, score: Callable):
        self.policy = policy  # rank 0 only
        self.loss_names = list(loss_names)
        self.rank = rank
        self.broadcast = broadcast
        self.score = score
        self.probe: Probe | None = None
        self.proposal: dict | None = None  # what the proposer said (rank 0)

    @property
    def active(self) -> bool:
        return self.probe is not None

    def begin(self, model, boundary: int, history: History) -> None:
        """Open the window at `boundary`: rank 0 proposes, every rank starts on the first candidate."""
        message = None
        if self.rank == 0:
            started = time.perf_counter()
            candidates, self.proposal = self.policy.propose(History(list(history.records)))
            self.proposal['propose_s'] = round(time.perf_counter() - started, 4)
            message = (candidates, self.policy.probe_iters)
        candidates, probe_iters = self.broadcast(message)
        self.probe = start_probe(model, boundary, probe_iters, candidates)

    def step(self, model, iteration: int) -> bool:
        """Keep this iteration's inputs; True when the window closes with it."""
        self.probe.keep_step(model)
        return iteration == self.probe.end

    def finish(self, model, history: History, record: StageRecord | None) -> tuple[int, dict]:
        """Replay the other candidates, score them all, let the policy choose (rank 0 records the decision
        on `record`) and continue from the winner: (the boundary, the winner's weights)."""
        probe = self.probe
        ends, logs, probes = [], [], []
        for k, weights in enumerate(probe.candidates):
            started = time.perf_counter()
            ok = (model.skipped_updates == probe.start['skipped_updates']) if k == 0 else replay(model, probe, weights)
            ends.append(model.take_snapshot())
            logs.append(dict(model.log_dict) if getattr(model, 'log_dict', None) is not None else None)
            if self.rank == 0:
                scores, errors = self.score(model, self.policy.probe_network)
                probes.append(
                    ProbeResult(
                        dict(weights),
                        scores,
                        valid=ok and not errors,
                        note=None
                        if ok and not errors
                        else ('non-finite training' if not ok else f'expert errors: {sorted(errors)}'),
                        eval_s=round(time.perf_counter() - started, 4),
                    )
                )
        winner = 0
        if self.rank == 0:
            decision = self.policy.choose(History(list(history.records)), probes, self.proposal)
            decision.latency_s = round(self.proposal['propose_s'] + sum(p.eval_s for p in probes), 4)
            record.probes = probes
            record.record_decision(decision, self.loss_names)
            winner = decision.info.get('winner') or 0
        winner = self.broadcast(winner)
        finish_on(model, probe, ends, logs, winner)
        self.probe = None
        return probe.boundary, probe.candidates[winner]

    def abandon(self) -> Probe | None:
        """Give the open window up (training ended in it); the caller keeps its first candidate."""
        probe, self.probe = self.probe, None
        return probe

    def state_dict(self) -> dict | None:
        if self.probe is None:
            return None
        return {**self.probe.state_dict(), 'proposal': json.loads(json.dumps(self.proposal or {}, default=str))}

    def load_state_dict(self, state: dict, world_size: int) -> bool:
        """Reopen a saved window; False where it cannot be finished (several processes: the other ranks'
        window inputs were not saved)."""
        if world_size != 1:
            return False
        state = dict(state)
        self.proposal = state.pop('proposal')
        self.probe = Probe.from_state(state)
        return True
