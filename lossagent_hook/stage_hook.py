"""The stage hook: at every `agent.stage_iters` iterations, score the network and ask the policy.

(Over ~400 lines on purpose: every kind of moment the hook reacts to -- stage 0, snapshots, a sync or
async boundary, a probe window, resume, the end -- stays readable in one place; how a decision is
obtained is decision_runner.py, how candidates are probed lookahead_loop.py.)

Like an mmengine hook that changes hyperparameters at validation points, it owns no training
logic and decides only *when*: `LossAgentModel` calls `start` before the first iteration,
`after_iteration` after each one and `finish` at the end of training, and the hook picks the
boundaries, the snapshots, what is broadcast and what is logged. *How* a decision is obtained
(a worker thread, the budget, a person's approval) is decision_runner.py's; a policy whose class
says `needs_probes` has its candidates trained by lookahead_loop.py. Only rank 0 restores the
validation images, runs the experts and asks the policy; the weights are broadcast so every rank
applies the same ones from the same iteration.

Synchronous (default, as in the paper): training waits for the decision at the boundary.
`agent.async: true`: training goes on with the current weights while the policy thinks; the new
weights apply from the first iteration after the answer arrives (with several processes, the
first of the checks made every `agent.async_poll_iters` iterations), recorded as
`applied_iteration`.

The options arrive parsed (`AgentOptions` and the experts' `ExpertSpec`s, from
lossagent_models/training_specs.py); nothing here reads the `agent` section again.

Nothing that goes wrong here (expert error, NaN score, policy exception, slow server) stops
training: the previous weights are kept and the record says why.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import torch.distributed as dist
from tqdm import tqdm

from agent import Decision, History, StageRecord, build_policy
from agent.decision_log import DecisionLog
from agent.policies.lookahead_policy import probe_overhead
from agent.record import mean_of_numbers
from agent.runs.plot import plot_experiment
from agent.weights import check_weights, ratio
from basicsr.utils import get_root_logger
from lossagent_errors import OptionError
from lossagent_options import AgentOptions

from .decision_runner import DecisionRunner
from .experts import ExpertSpec
from .lookahead_loop import LookaheadLoop
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
    def __init__(
        self, opt: dict, options: AgentOptions, experts: list[ExpertSpec], repository, device, experiment_root: str
    ):
        self.options = options
        self.opt = opt
        self.repository = repository
        self.device = device
        self.stage_iters = options.stage_iters
        self.async_mode = options.async_decisions
        self.rank = opt.get('rank', 0)
        self.world_size = opt.get('world_size', 1)
        self.poll_iters = options.async_poll_iters
        self.total_iters = int((opt.get('train') or {}).get('total_iter', 0) or 0)
        self.score_network = options.score_network
        self._snapshot_scores: list[dict] = []  # this stage's earlier snapshots (rank 0)
        self.logger = get_root_logger()
        self.history = History()
        self.stage = 0
        self.started = False
        self.pending_since: int | None = None  # boundary iteration of a decision not yet applied
        self._pending: StageRecord | None = None  # the record whose decision is awaited
        agent_dir = Path(experiment_root) / 'agent'
        self.applied_path = agent_dir / f'applied_rank{self.rank}.jsonl'
        self.group = None
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            # Rank 0 may spend minutes on the LLM while the others wait in this group's broadcast.
            self.group = dist.new_group(timeout=datetime.timedelta(seconds=options.dist_timeout_s))
        self.policy = self.experts = self.val_set = self.log = self.tb = self.runner = None
        if self.rank == 0:
            self._build_rank0(agent_dir, experts)
        self.lookahead = (
            LookaheadLoop(self.policy, repository.names, self.rank, self._broadcast, self._probe_scores)
            if options.needs_probes
            else None
        )

    def _build_rank0(self, agent_dir: Path, expert_specs: list[ExpertSpec]) -> None:
        """What only rank 0 needs; problems the option check cannot see (weights files, data) surface
        here, before any training time is spent."""
        o = self.options
        self.log = DecisionLog(agent_dir / 'decisions.jsonl')
        self.experts = [spec.build(self.device) for spec in expert_specs]
        self.val_set = AgentValidationSet(
            o.dataset, o.num_images, o.image_seed, int(self.opt.get('scale', 1)), o.pad_multiple
        )
        if not self.val_set.has_gt:
            full_reference = [e.name for e in self.experts if e.full_reference]
            if full_reference:
                raise OptionError(
                    f'agent.experts.{full_reference[0]}: a full-reference metric needs ground truth, '
                    f'but agent.dataset ({o.dataset.get("type")}) has LQ images only; '
                    f'use no-reference experts'
                )
        weights = self.repository.get_weights()
        self.policy = build_policy(
            o.policy,
            list(weights),
            list(weights.values()),
            [e.info for e in self.experts],
            seed=o.policy_seed,
            task=o.task,
        )
        self.runner = DecisionRunner(self.policy, o, agent_dir)
        self.tb = agent_tb_writer(self.opt)
        snapshots = o.snapshot_iterations(self.stage_iters)
        overhead = probe_overhead(self.policy, self.stage_iters)
        if overhead and snapshots[0] <= getattr(self.policy, 'probe_iters', 0):
            raise OptionError(
                f'agent.snapshots: the first snapshot (iteration {snapshots[0]} of a stage) falls in the '
                f'lookahead window of {self.policy.probe_iters} iterations; take fewer or closer ones'
            )
        self.logger.info(
            f'Loss agent: policy {self.policy.name}, {len(self.val_set)} validation images, '
            f'experts {[(e.name, "lower" if e.lower_better else "higher") for e in self.experts]}, '
            f'a stage every {self.stage_iters} iterations, scoring {self.score_network}'
            + (f' averaged over {o.snapshots} snapshots {o.snapshot_every} iterations apart' if o.snapshots > 1 else '')
            + (
                f'; lookahead: {self.policy.candidates} candidates x {self.policy.probe_iters} iterations, '
                f'(K-1)*P/stage_iters = {overhead:.1%} extra training'
                if overhead
                else ''
            )
            + f'{" (asynchronous decisions)" if self.async_mode else ""}; log {self.log.path}'
        )

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
        if self.lookahead is not None and self.lookahead.active:
            if self.lookahead.step(model, iteration):
                self._finish_probe(model)
            return  # no boundary falls inside a probe (probe_iters < stage_iters)
        if self.pending_since is not None and (iteration - self.pending_since) % self.poll_iters == 0:
            self._collect(iteration, wait=False)
        if (
            self.rank == 0
            and iteration % self.stage_iters
            and self.stage_iters - iteration % self.stage_iters in self._snapshot_offsets()
        ):
            self._snapshot_scores.append(self._score(model, numeric_only=True)[0])
        if iteration % self.stage_iters == 0:
            if self.pending_since is not None:  # the previous answer is still out: it comes first
                self._collect(iteration, wait=True)
            self.stage += 1
            if self.lookahead is not None:
                self._start_probe(model, iteration)
                return
            if self.rank == 0:
                self._pending = self._evaluate(model, iteration, decide=True)
                self.runner.submit(self.history)
            self.pending_since = iteration
            if not self.async_mode:
                self._collect(iteration, wait=True)

    # ---- rank 0: evaluate ---------------------------------------------------------------
    def _snapshot_offsets(self) -> set[int]:
        """How many iterations before a boundary the earlier snapshots are taken."""
        return {self.stage_iters - i for i in self.options.snapshot_iterations(self.stage_iters)[:-1]}

    def _score(self, model, numeric_only: bool = False, network: str | None = None) -> tuple[dict, dict, list]:
        """(scores per expert, errors per expert, the restorations) of the scored network now."""
        outputs = self.val_set.restore(model.scored_network(network or self.score_network), self.device)
        if not numeric_only:  # the boundary's own evaluation: its images for people (stage_images.py)
            write_stage_images(self.log.path.parent, self.stage, self.val_set, outputs, self.options.stage_images)
        scores, errors = {}, {}
        experts = [e for e in self.experts if e.kind == 'score'] if numeric_only else self.experts
        for expert in tqdm(experts, desc=f'stage {self.stage} experts', leave=False, disable=None):
            try:
                values = list(
                    expert.score(
                        outputs,
                        self.val_set.gts,
                        {'stage': self.stage, 'names': self.val_set.names, 'agent_dir': self.log.path.parent},
                    )
                )
            except Exception as err:  # one broken expert must not stop a long run
                self.logger.warning(f'Expert {expert.name} failed at stage {self.stage}: {err!r}')
                values, errors[expert.name] = [None] * len(outputs), repr(err)
            if expert.kind == 'score' and all(v is None for v in values):
                errors.setdefault(expert.name, 'no finite score')
            scores[expert.name] = values
        return scores, errors, outputs

    def _probe_scores(self, model, network: str) -> tuple[dict, dict]:
        """The lookahead loop's view of a candidate: the score experts on `network`."""
        return self._score(model, numeric_only=True, network=network)[:2]

    def _evaluate(self, model, iteration: int, decide: bool) -> StageRecord:
        started = time.perf_counter()
        scores, errors, outputs = self._score(model)
        snapshots = []
        if self._snapshot_scores and decide:
            scores = average_snapshots(self._snapshot_scores, scores)
            snapshots = self.options.snapshot_iterations(iteration)
        self._snapshot_scores = []
        record = StageRecord(
            stage=self.stage,
            iteration=iteration,
            weights_before=dict(self.repository.get_weights()),
            scores=scores,
            experts=[e.info for e in self.experts],
            images=list(self.val_set.names),
            expert_errors=errors,
            policy=self.policy.name if decide else 'initial',
            eval_s=round(time.perf_counter() - started, 4),
            scored_network=self.score_network,
            snapshots=snapshots,
        )
        self.history.append(record)
        log_scores(self.tb, record, outputs)
        return record

    # ---- a policy that probes: the window opens at a boundary and closes P iterations later ------
    def _start_probe(self, model, iteration: int) -> None:
        if iteration >= self.total_iters:  # nothing left to train: a window would never close
            if self.rank == 0:
                self._pending = self._evaluate(model, iteration, decide=True)
                self._pending.record_decision(
                    Decision(
                        weights=dict(self.repository.get_weights()),
                        policy=self.policy.name,
                        fallback='training ends here',
                    ),
                    self.repository.names,
                )
                self._write(self._pending)
                self._pending = None
            return
        if self.rank == 0:
            self._pending = self._evaluate(model, iteration, decide=True)
        self.lookahead.begin(model, iteration, self.history)

    def _finish_probe(self, model) -> None:
        boundary, weights = self.lookahead.finish(model, self.history, self._pending)
        self._applied(boundary, weights)
        if self.rank == 0:
            self._pending.applied_iteration = boundary + 1
            self._write(self._pending)
            self._pending = None

    # ---- all ranks: agree and apply ---------------------------------------------------------
    def _collect(self, iteration: int, wait: bool) -> None:
        weights = None
        if self.rank == 0:
            result = self.runner.result(wait)
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
            self._pending = None

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
        scores = ' '.join(
            f'{e.name}{e.arrow} ' + (f'{means[e.name]:.4g}' if means.get(e.name) is not None else 'n/a')
            for e in record.experts
            if e.name in means
        )
        names = list(record.weights_before)
        line = (
            f'[agent] stage {record.stage} @ iter {record.iteration} | {scores} | {":".join(names)} '
            f'{ratio(record.weights_before, names)} -> {ratio(record.weights_after, names)} ({record.policy}'
        )
        if record.fallback:
            line += f', kept: {record.fallback}'
        if record.applied_iteration is None:
            line += ', not applied: training ended'
        elif record.applied_iteration != record.iteration + 1:
            line += f', applied from iter {record.applied_iteration}'
        self.logger.info(line + f', eval {record.eval_s:.2f}s, decision {record.latency_s or 0:.2f}s)')

    # ---- resume ---------------------------------------------------------------------------
    def _probing(self) -> bool:
        return self.lookahead is not None and self.lookahead.active

    def state_dict(self) -> dict:
        """Plain types and tensors only, so the training state loads with torch.load(weights_only=True)."""
        pending = None
        if (self.pending_since is not None or self._probing()) and self._pending is not None:
            pending = json.loads(json.dumps(self._pending.to_dict(), default=str))
        return {
            'stage': self.stage,
            'started': self.started,
            'history': self.history.to_list(),
            'weights': dict(self.repository.get_weights()),
            'pending_since': self.pending_since,
            'pending_entry': pending,
            'policy': self.policy.state_dict() if self.policy is not None else {},
            'probe': self.lookahead.state_dict() if self.lookahead is not None else None,
            'snapshot_scores': list(self._snapshot_scores),
        }

    def load_state_dict(self, state: dict, iteration: int) -> None:
        self.stage = int(state['stage'])
        self.started = bool(state['started'])
        self.history = History.from_list(state['history'])
        problem = check_weights(state['weights'], self.repository.names)  # weights read back from disk
        if problem:
            raise ValueError(f'loss weights rejected: {problem}')
        self.repository.set_weights(state['weights'])
        self.pending_since = state.get('pending_since')
        self._snapshot_scores = list(state.get('snapshot_scores') or [])
        probe = state.get('probe')
        reopened = (
            probe is not None and self.lookahead is not None and self.lookahead.load_state_dict(probe, self.world_size)
        )
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
            self.runner.submit(self.history)
        if probe is not None and not reopened:
            self._keep_first_candidate(
                probe['boundary'], probe['candidates'], 'resumed inside a lookahead window with several processes'
            )
        self.logger.info(
            f'Loss agent resumed at stage {self.stage} (iter {iteration}) with weights '
            f'{dict(self.repository.get_weights())}; {superseded} later records marked superseded'
            f'{"; re-asking the pending decision" if self.pending_since is not None else ""}'
            f'{"; inside a lookahead window" if self._probing() else ""}'
        )

    def _keep_first_candidate(self, boundary: int, candidates: list[dict], why: str) -> None:
        """A probe that cannot be finished: the first candidate (trained live) stands (rank 0 records it)."""
        self._pending.record_decision(
            Decision(
                weights=dict(candidates[0]), policy=self.policy.name, fallback=f'{why}: the first candidate was kept'
            ),
            self.repository.names,
        )
        self._pending.applied_iteration = boundary + 1
        self._write(self._pending)
        self._pending = None

    def close(self) -> None:
        """A preempted run (rank 0): release the worker, the policy (a managed LLM server stops) and
        TensorBoard, recording nothing: a decision still out is in the training state just saved and
        is asked again on resume; every record so far is already fsync'd in the decision log."""
        if self.rank != 0:
            return
        self.runner.close(cancel=True)
        self.policy.close()
        if self.tb is not None:
            self.tb.close()

    def finish(self) -> None:
        """End of training (rank 0): record a decision still out, plot the run, release resources.

        A pending asynchronous decision is waited for (within the budget) so the last stage's
        scores reach the log; its weights are never applied (`applied_iteration: null`). A lookahead
        window the run ended in keeps its first candidate, which trained to the end.
        """
        probe = self.lookahead.abandon() if self.lookahead is not None else None
        if self.rank != 0:
            return
        if probe is not None:
            self._keep_first_candidate(probe.boundary, probe.candidates, 'training ended inside the lookahead window')
        if self.pending_since is not None and self.runner.pending:
            decision, trace = self.runner.result(wait=True)
            self._pending.record_decision(decision, self.repository.names, trace)
            self._pending.applied_iteration = None
            self.log.append(self._pending)
            self._report(self._pending)
            self.pending_since = self._pending = None
        self.runner.close()
        self.policy.close()
        if self.tb is not None:
            self.tb.close()
        plot_experiment(self.log.path, logger=self.logger)
