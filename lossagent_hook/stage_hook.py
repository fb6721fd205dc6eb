"""The stage hook: at every `agent.stage_iters` iterations, score the network and ask the policy.

Like an mmengine hook that changes hyperparameters at validation points, it owns no training
logic; `LossAgentModel` calls `start` before the first iteration, `after_iteration` after each
one and `finish` at the end of training. Only rank 0 restores the validation images, runs the
experts and asks the policy (in a worker thread, bounded by `agent.boundary_budget_s`); the
weights are broadcast so every rank applies the same ones from the same iteration.

Synchronous (default, as in the paper): training waits for the decision at the boundary.
`agent.async: true`: training goes on with the current weights while the policy thinks; the new
weights apply from the first iteration after the answer arrives (with several processes, the
first of the checks made every `agent.async_poll_iters` iterations), recorded as
`applied_iteration`.

Nothing that goes wrong here (expert error, NaN score, policy exception, slow server) stops
training: the previous weights are kept and the record says why.
"""
from __future__ import annotations

import concurrent.futures as futures
import datetime
import json
import time
import traceback
from pathlib import Path
from typing import Optional

import torch.distributed as dist
from tqdm import tqdm

from agent import Decision, History, StageRecord, build_policy
from agent.decision_log import DecisionLog
from agent.policies.lookahead_policy import probe_overhead
from agent.record import ProbeResult, mean_of_numbers
from agent.runs.plot import plot_experiment
from agent.weights import ratio
from basicsr.utils import get_root_logger
from lossagent_errors import OptionError

from .agent_options import AgentOptions
from .experts import build_experts
from .human_approval import review_decision
from .lookahead import Probe, check_lookahead, finish_on, replay, start_probe
from .stage_images import write_stage_images
from .tensorboard_log import agent_tb_writer, log_decision, log_scores
from .validation_set import AgentValidationSet


def average_snapshots(earlier: list[dict], latest: dict) -> dict:
    """Per image, each score expert's mean over the stage's snapshots (text experts: the latest only,
    snapshots before the boundary score numbers only)."""
    out = {}
    for name, values in latest.items():
        columns = [s[name] for s in earlier if name in s] + [values]
        out[name] = [mean_of_numbers(image) for image in zip(*columns)] if len(columns) > 1 else values
    return out


class StageHook:
    def __init__(self, opt: dict, repository, device, experiment_root: str):
        self.options = AgentOptions.from_opt(opt)
        self.opt = opt
        self.repository = repository
        self.device = device
        self.stage_iters = self.options.stage_iters
        self.budget_s = self.options.boundary_budget_s
        self.async_mode = self.options.async_decisions
        self.rank = opt.get('rank', 0)
        self.world_size = opt.get('world_size', 1)
        self.poll_iters = self.options.async_poll_iters
        self.total_iters = int((opt.get('train') or {}).get('total_iter', 0) or 0)
        self.score_network = self.options.score_network
        self.probing_policy = self.options.policy.get('type') == 'lookahead'
        check_lookahead(self.options.policy, self.stage_iters, self.async_mode)
        self.probe: Optional[Probe] = None           # a lookahead's window in progress
        self._proposal: Optional[dict] = None        # what its proposer said (rank 0)
        self._snapshot_scores: list[dict] = []       # this stage's earlier snapshots (rank 0)
        self.logger = get_root_logger()
        self.history = History()
        self.stage = 0
        self.started = False
        self.pending_since: Optional[int] = None  # boundary iteration of a decision not yet applied
        self._future = None
        self._pending: Optional[StageRecord] = None  # the record whose decision is awaited
        agent_dir = Path(experiment_root) / 'agent'
        self.applied_path = agent_dir / f'applied_rank{self.rank}.jsonl'
        self.group = None
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            # Rank 0 may spend minutes on the LLM while the others wait in this group's broadcast.
            self.group = dist.new_group(timeout=datetime.timedelta(seconds=self.options.dist_timeout_s))
        self.policy = self.experts = self.val_set = self.log = self.tb = None
        if self.rank == 0:
            self._build_rank0(agent_dir)

    def _build_rank0(self, agent_dir: Path) -> None:
        """What only rank 0 needs; problems the option check cannot see (weights files, data) surface
        here, before any training time is spent."""
        o = self.options
        self.log = DecisionLog(agent_dir / 'decisions.jsonl')
        self.experts = build_experts(o.experts, self.device)
        self.val_set = AgentValidationSet(o.dataset, o.num_images, o.image_seed, int(self.opt.get('scale', 1)),
                                          o.pad_multiple)
        if not self.val_set.has_gt:
            full_reference = [e.name for e in self.experts if getattr(e, 'full_reference', False)]
            if full_reference:
                raise OptionError(f'agent.experts.{full_reference[0]}: a full-reference metric needs ground truth, '
                                  f"but agent.dataset ({o.dataset.get('type')}) has LQ images only; "
                                  f'use no-reference experts')
        weights = self.repository.get_weights()
        self.policy = build_policy(o.policy, list(weights), list(weights.values()), [e.info for e in self.experts],
                                   seed=o.policy_seed, task=o.task)
        self.executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='loss-agent')
        self.tb = agent_tb_writer(self.opt)
        snapshots = o.snapshot_iterations(self.stage_iters)
        overhead = probe_overhead(self.policy, self.stage_iters)
        if overhead and snapshots[0] <= getattr(self.policy, 'probe_iters', 0):
            raise OptionError(f'agent.snapshots: the first snapshot (iteration {snapshots[0]} of a stage) falls in the '
                              f'lookahead window of {self.policy.probe_iters} iterations; take fewer or closer ones')
        self.logger.info(f'Loss agent: policy {self.policy.name}, {len(self.val_set)} validation images, '
                         f'experts {[(e.name, "lower" if e.lower_better else "higher") for e in self.experts]}, '
                         f'a stage every {self.stage_iters} iterations, scoring {self.score_network}'
                         + (f' averaged over {o.snapshots} snapshots {o.snapshot_every} iterations apart'
                            if o.snapshots > 1 else '')
                         + (f'; lookahead: {self.policy.candidates} candidates x {self.policy.probe_iters} iterations, '
                            f'(K-1)*P/stage_iters = {overhead:.1%} extra training' if overhead else '')
                         + f'{" (asynchronous decisions)" if self.async_mode else ""}; log {self.log.path}')

    # ---- called by the model -------------------------------------------------------------
    def start(self, model, iteration: int) -> None:
        """Stage 0: score the network before the agent changes anything."""
        if self.started:
            return
        self.started = True
        if self.rank == 0:
            record = self._evaluate(model, iteration, decide=False)
            record.weights_after, record.applied_iteration = dict(record.weights_before), iteration + 1
            self._write(record)

    def after_iteration(self, model, iteration: int) -> None:
        if self.probe is not None:
            self.probe.keep_step(model)
            if iteration == self.probe.end:
                self._finish_probe(model)
            return  # no boundary falls inside a probe (probe_iters < stage_iters)
        if self.pending_since is not None and (iteration - self.pending_since) % self.poll_iters == 0:
            self._collect(iteration, wait=False)
        if self.rank == 0 and iteration % self.stage_iters and \
                self.stage_iters - iteration % self.stage_iters in self._snapshot_offsets():
            self._snapshot_scores.append(self._score(model, numeric_only=True)[0])
        if iteration % self.stage_iters == 0:
            if self.pending_since is not None:  # the previous answer is still out: it comes first
                self._collect(iteration, wait=True)
            self.stage += 1
            if self.probing_policy:
                self._start_probe(model, iteration)
                return
            if self.rank == 0:
                self._pending = self._evaluate(model, iteration, decide=True)
                self._submit()
            self.pending_since = iteration
            if not self.async_mode:
                self._collect(iteration, wait=True)

    # ---- rank 0: evaluate and decide ------------------------------------------------------
    def _snapshot_offsets(self) -> set[int]:
        """How many iterations before a boundary the earlier snapshots are taken."""
        return {self.stage_iters - i for i in self.options.snapshot_iterations(self.stage_iters)[:-1]}

    def _score(self, model, numeric_only: bool = False, network: Optional[str] = None) -> tuple[dict, dict, list]:
        """(scores per expert, errors per expert, the restorations) of the scored network now."""
        outputs = self.val_set.restore(model.scored_network(network or self.score_network), self.device)
        if not numeric_only:  # the boundary's own evaluation: its images for people (stage_images.py)
            write_stage_images(self.log.path.parent, self.stage, self.val_set, outputs, self.options.stage_images)
        scores, errors = {}, {}
        experts = [e for e in self.experts if e.kind == 'score'] if numeric_only else self.experts
        for expert in tqdm(experts, desc=f'stage {self.stage} experts', leave=False, disable=None):
            try:
                values = list(expert.score(outputs, self.val_set.gts, {
                    'stage': self.stage, 'names': self.val_set.names, 'agent_dir': self.log.path.parent}))
            except Exception as err:  # one broken expert must not stop a long run
                self.logger.warning(f'Expert {expert.name} failed at stage {self.stage}: {err!r}')
                values, errors[expert.name] = [None] * len(outputs), repr(err)
            if expert.kind == 'score' and all(v is None for v in values):
                errors.setdefault(expert.name, 'no finite score')
            scores[expert.name] = values
        return scores, errors, outputs

    def _evaluate(self, model, iteration: int, decide: bool) -> StageRecord:
        started = time.perf_counter()
        scores, errors, outputs = self._score(model)
        snapshots = []
        if self._snapshot_scores and decide:
            scores = average_snapshots(self._snapshot_scores, scores)
            snapshots = self.options.snapshot_iterations(iteration)
        self._snapshot_scores = []
        record = StageRecord(stage=self.stage, iteration=iteration, weights_before=dict(self.repository.get_weights()),
                             scores=scores, experts=[e.info for e in self.experts], images=list(self.val_set.names),
                             expert_errors=errors, policy=self.policy.name if decide else 'initial',
                             eval_s=round(time.perf_counter() - started, 4), scored_network=self.score_network,
                             snapshots=snapshots)
        self.history.append(record)
        log_scores(self.tb, record, outputs)
        return record

    # ---- lookahead: all ranks probe the same candidates in lockstep ------------------------------
    def _start_probe(self, model, iteration: int) -> None:
        if iteration >= self.total_iters:  # nothing left to train: a window would never close
            if self.rank == 0:
                self._pending = self._evaluate(model, iteration, decide=True)
                self._pending.record_decision(Decision(weights=dict(self.repository.get_weights()),
                                                       policy=self.policy.name, fallback='training ends here'),
                                              self.repository.names)
                self._write(self._pending)
                self._pending = None
            return
        message = None
        if self.rank == 0:
            self._pending = self._evaluate(model, iteration, decide=True)
            self._probe_started = time.perf_counter()
            candidates, self._proposal = self.policy.propose(History(list(self.history.records)))
            self._proposal['propose_s'] = round(time.perf_counter() - self._probe_started, 4)
            message = (candidates, self.policy.probe_iters)
        candidates, probe_iters = self._broadcast(message)
        self.probe = start_probe(model, iteration, probe_iters, candidates)

    def _finish_probe(self, model) -> None:
        probe = self.probe
        ends, logs, probes = [], [], []
        for k, weights in enumerate(probe.candidates):
            started = time.perf_counter()
            ok = (model.skipped_updates == probe.start['skipped_updates']) if k == 0 else replay(model, probe, weights)
            ends.append(model.take_snapshot())
            logs.append(dict(model.log_dict) if getattr(model, 'log_dict', None) is not None else None)
            if self.rank == 0:
                scores, errors, _ = self._score(model, numeric_only=True, network=self.policy.probe_network)
                probes.append(ProbeResult(dict(weights), scores, valid=ok and not errors,
                                          note=None if ok and not errors else
                                          ('non-finite training' if not ok else f'expert errors: {sorted(errors)}'),
                                          eval_s=round(time.perf_counter() - started, 4)))
        winner = 0
        if self.rank == 0:
            record = self._pending
            decision = self.policy.choose(History(list(self.history.records)), probes, self._proposal)
            decision.latency_s = round(self._proposal['propose_s'] + sum(p.eval_s for p in probes), 4)
            record.probes = probes
            record.record_decision(decision, self.repository.names)
            winner = decision.info.get('winner') or 0
        winner = self._broadcast(winner)
        finish_on(model, probe, ends, logs, winner)
        self.probe = None
        self._applied(probe.boundary, probe.candidates[winner])
        if self.rank == 0:
            self._pending.applied_iteration = probe.boundary + 1
            self._write(self._pending)
            self._pending = None

    def _submit(self) -> None:
        history = History(list(self.history.records))  # the main thread appends while we think
        self._submitted_at = time.perf_counter()
        self._future = self.executor.submit(self._decide, history)

    def _decide(self, history: History) -> tuple[Decision, Optional[str]]:
        """(the decision, the traceback when the policy raised). Runs in the worker thread."""
        started = time.perf_counter()
        try:
            decision = self.policy.decide(history)
        except Exception as err:  # a policy bug must not cost the run
            return Decision(weights={}, policy=self.policy.name, fallback=f'policy raised {err!r}',
                            latency_s=round(time.perf_counter() - started, 4)), traceback.format_exc(limit=5)
        decision.latency_s = round(decision.latency_s or time.perf_counter() - started, 4)
        decision = review_decision(decision, history.last, self.options, self.log.path.parent)
        return decision, None

    def _result(self, wait: bool) -> Optional[tuple[Decision, Optional[str]]]:
        """The decision, None while (asynchronously) still thinking."""
        if not wait and not self._future.done():
            return None
        remaining = self.budget_s - (time.perf_counter() - self._submitted_at)
        try:
            return self._future.result(timeout=max(0.0, remaining))
        except futures.TimeoutError:
            # The worker cannot be interrupted; a fresh one serves the next boundaries.
            self.executor.shutdown(wait=False)
            self.executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='loss-agent')
            return Decision(weights={}, policy=self.policy.name,
                            fallback=f'no decision within agent.boundary_budget_s={self.budget_s:g}s',
                            latency_s=round(self.budget_s, 4)), None

    # ---- all ranks: agree and apply ---------------------------------------------------------
    def _collect(self, iteration: int, wait: bool) -> None:
        weights = None
        if self.rank == 0:
            result = self._result(wait)
            if result is not None:
                decision, trace = result
                weights = self._pending.record_decision(decision, self.repository.names, trace)
        weights = self._broadcast(weights)
        if weights is None:
            return
        self.repository.set_weights(weights)
        self.pending_since = None
        self._applied(iteration, weights)
        if self.rank == 0:
            self._pending.applied_iteration = iteration + 1
            self._write(self._pending)
            self._future = self._pending = None

    def _applied(self, iteration: int, weights: dict) -> None:
        """What this rank trains with from the next iteration on (agent/applied_rank<r>.jsonl)."""
        self.applied_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.applied_path, 'a', encoding='utf-8') as f:
            f.write(json.dumps({'stage': self.stage, 'from_iteration': iteration + 1, 'weights': weights}) + '\n')

    def _broadcast(self, message):
        if self.group is None:
            return message
        box = [message]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def _write(self, record: StageRecord) -> None:
        self.log.append(record)
        log_decision(self.tb, record)
        self._report(record)

    def _report(self, record: StageRecord) -> None:
        means = record.mean_scores()
        scores = ' '.join(f'{e.name}{e.arrow} ' + (f'{means[e.name]:.4g}' if means.get(e.name) is not None else 'n/a')
                          for e in record.experts if e.name in means)
        names = list(record.weights_before)
        line = (f'[agent] stage {record.stage} @ iter {record.iteration} | {scores} | {":".join(names)} '
                f'{ratio(record.weights_before, names)} -> {ratio(record.weights_after, names)} ({record.policy}')
        if record.fallback:
            line += f', kept: {record.fallback}'
        if record.applied_iteration is None:
            line += ', not applied: training ended'
        elif record.applied_iteration != record.iteration + 1:
            line += f', applied from iter {record.applied_iteration}'
        self.logger.info(line + f', eval {record.eval_s:.2f}s, decision {record.latency_s or 0:.2f}s)')

    # ---- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain types and tensors only, so the training state loads with torch.load(weights_only=True)."""
        pending = None
        if (self.pending_since is not None or self.probe is not None) and self._pending is not None:
            pending = json.loads(json.dumps(self._pending.to_dict(), default=str))
        probe = None
        if self.probe is not None:
            probe = {**self.probe.state_dict(), 'proposal': json.loads(json.dumps(self._proposal or {}, default=str))}
        return {'stage': self.stage, 'started': self.started, 'history': self.history.to_list(),
                'weights': dict(self.repository.get_weights()), 'pending_since': self.pending_since,
                'pending_entry': pending, 'policy': self.policy.state_dict() if self.policy is not None else {},
                'probe': probe, 'snapshot_scores': list(self._snapshot_scores)}

    def load_state_dict(self, state: dict, iteration: int) -> None:
        self.stage = int(state['stage'])
        self.started = bool(state['started'])
        self.history = History.from_list(state['history'])
        self.repository.set_weights(state['weights'])
        self.pending_since = state.get('pending_since')
        self._snapshot_scores = list(state.get('snapshot_scores') or [])
        probe = state.get('probe')
        if probe is not None and self.world_size == 1:
            probe = dict(probe)
            self._proposal = probe.pop('proposal')
            self.probe = Probe.from_state(probe)
        if self.rank != 0:
            return
        self.policy.load_state_dict(state.get('policy', {}))
        pending_stage = self.stage if self.pending_since is not None or probe is not None else None
        superseded = self.log.supersede_after(iteration, pending_stage)
        if self.pending_since is not None or probe is not None:
            self._pending = StageRecord.from_dict(state['pending_entry'])
            if self.history.last is not None and self.history.last.stage == self._pending.stage:
                self.history.records[-1] = self._pending
        if self.pending_since is not None:  # the answer was lost with the process: ask again
            self._submit()
        if probe is not None and self.probe is None:  # the other ranks' window inputs were not saved
            self._keep_first_candidate(probe['boundary'], probe['candidates'],
                                       'resumed inside a lookahead window with several processes')
        self.logger.info(f'Loss agent resumed at stage {self.stage} (iter {iteration}) with weights '
                         f'{dict(self.repository.get_weights())}; {superseded} later records marked superseded'
                         f'{"; re-asking the pending decision" if self.pending_since is not None else ""}'
                         f'{"; inside a lookahead window" if self.probe is not None else ""}')

    def _keep_first_candidate(self, boundary: int, candidates: list[dict], why: str) -> None:
        """A probe that cannot be finished: the first candidate (trained live) stands (rank 0 records it)."""
        self._pending.record_decision(Decision(weights=dict(candidates[0]), policy=self.policy.name,
                                               fallback=f'{why}: the first candidate was kept'), self.repository.names)
        self._pending.applied_iteration = boundary + 1
        self._write(self._pending)
        self._pending = None

    def finish(self) -> None:
        """End of training (rank 0): record a decision still out, plot the run, release resources.

        A pending asynchronous decision is waited for (within the budget) so the last stage's
        scores reach the log; its weights are never applied (`applied_iteration: null`). A lookahead
        window the run ended in keeps its first candidate, which trained to the end.
        """
        probe, self.probe = self.probe, None
        if self.rank != 0:
            return
        if probe is not None:
            self._keep_first_candidate(probe.boundary, probe.candidates, 'training ended inside the lookahead window')
        if self.pending_since is not None and self._future is not None:
            decision, trace = self._result(wait=True)
            self._pending.record_decision(decision, self.repository.names, trace)
            self._pending.applied_iteration = None
            self.log.append(self._pending)
            self._report(self._pending)
            self.pending_since = self._future = self._pending = None
        self.executor.shutdown(wait=False)
        self.policy.close()
        if self.tb is not None:
            self.tb.close()
        plot_experiment(self.log.path, logger=self.logger)
