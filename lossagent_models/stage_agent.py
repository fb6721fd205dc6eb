"""The stage hook: at every `agent.stage_iters` iterations, score the network and ask the policy.

Like an mmengine hook that changes hyperparameters at validation points, it owns no training
logic; `LossAgentModel` calls `start` before the first iteration and `after_iteration` after
each one. Only rank 0 restores the validation images, runs the experts and asks the policy
(in a worker thread, bounded by `agent.boundary_budget_s`); the weights are broadcast so every
rank applies the same ones from the same iteration.

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
import math
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from tqdm import tqdm

from agent import History, OptionError, StageRecord, build_policy
from agent.decision_log import DecisionLog
from agent.plot import plot_experiment
from basicsr.utils import get_root_logger

from .agent_tensorboard import agent_tb_writer, log_decision, log_scores
from .agent_validation import AgentValidationSet
from .experts import build_experts


def _positive(agent_opt: dict, key: str, default, kind=int):
    value = agent_opt.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 \
            or (kind is int and not isinstance(value, int)):
        raise OptionError(f'agent.{key} must be a positive {"integer" if kind is int else "number"}, got {value!r}')
    return kind(value)


def valid_weights(weights, names) -> Optional[str]:
    """Why `weights` cannot be applied, or None when they can."""
    if not isinstance(weights, dict) or sorted(weights) != sorted(names):
        return f'policy returned weights for {sorted(weights) if isinstance(weights, dict) else weights}, ' \
               f'expected {names}'
    bad = [n for n in names if not isinstance(weights[n], (int, float)) or not math.isfinite(weights[n])
           or weights[n] < 0]
    return f'policy returned invalid weights for {bad}' if bad else None


class StageAgent:
    def __init__(self, opt: dict, repository, device, experiment_root: str):
        agent_opt = opt['agent']
        self.opt = opt
        self.repository = repository
        self.device = device
        self.stage_iters = _positive(agent_opt, 'stage_iters', 5000)
        self.budget_s = _positive(agent_opt, 'boundary_budget_s', 3600, float)
        self.async_mode = bool(agent_opt.get('async', False))
        self.rank = opt.get('rank', 0)
        self.world_size = opt.get('world_size', 1)
        self.poll_iters = _positive(agent_opt, 'async_poll_iters', 1 if self.world_size == 1 else 10)
        self.logger = get_root_logger()
        self.history = History()
        self.stage = 0
        self.started = False
        self.pending_since: Optional[int] = None  # boundary iteration of a decision not yet applied
        self._future = self._entry = None
        agent_dir = Path(experiment_root) / 'agent'
        self.applied_path = agent_dir / f'applied_rank{self.rank}.jsonl'
        self.group = None
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            # Rank 0 may spend minutes on the LLM while the others wait in this group's broadcast.
            timeout = _positive(agent_opt, 'dist_timeout_s', max(1800.0, 2 * self.budget_s), float)
            self.group = dist.new_group(timeout=datetime.timedelta(seconds=timeout))
        self.policy = self.experts = self.val_set = self.log = self.tb = None
        if self.rank == 0:
            self._build_rank0(agent_opt, agent_dir)

    def _build_rank0(self, agent_opt: dict, agent_dir: Path) -> None:
        """Config errors surface here, at start-up, before any training time is spent."""
        opt = self.opt
        self.log = DecisionLog(agent_dir / 'decisions.jsonl')
        self.experts = build_experts(agent_opt.get('experts'), self.device)
        self.val_set = AgentValidationSet(agent_opt.get('dataset'), _positive(agent_opt, 'num_images', 10),
                                          int(agent_opt.get('image_seed', 0)), int(opt.get('scale', 1)),
                                          agent_opt.get('pad_multiple', (opt.get('network_g') or {}).get('window_size', 1)))
        if not self.val_set.has_gt:
            full_reference = [e.name for e in self.experts if getattr(e, 'full_reference', False)]
            if full_reference:
                raise OptionError(f'agent.experts.{full_reference[0]}: a full-reference metric needs ground truth, '
                                  f"but agent.dataset ({agent_opt['dataset'].get('type')}) has LQ images only; "
                                  f'use no-reference experts')
        weights = self.repository.get_weights()
        self.policy = build_policy(agent_opt.get('policy', {'type': 'fixed'}), list(weights),
                                   list(weights.values()), [e.info for e in self.experts],
                                   seed=int(agent_opt.get('policy_seed', opt.get('manual_seed', 0))),
                                   task=agent_opt.get('task', 'image super-resolution'))
        self.executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='loss-agent')
        self.tb = agent_tb_writer(opt)
        self.logger.info(f'Loss agent: policy {self.policy.name}, {len(self.val_set)} validation images, '
                         f'experts {[(e.name, "lower" if e.lower_better else "higher") for e in self.experts]}, '
                         f'a stage every {self.stage_iters} iterations'
                         f'{" (asynchronous decisions)" if self.async_mode else ""}; log {self.log.path}')

    # ---- called by the model -------------------------------------------------------------
    def start(self, net: torch.nn.Module, iteration: int) -> None:
        """Stage 0: score the network before the agent changes anything."""
        if self.started:
            return
        self.started = True
        if self.rank == 0:
            entry = self._evaluate(net, iteration, decide=False)
            entry.update(weights_after=entry['weights_before'], applied_iteration=iteration + 1)
            self._write(entry)

    def after_iteration(self, net: torch.nn.Module, iteration: int) -> None:
        if self.pending_since is not None and (iteration - self.pending_since) % self.poll_iters == 0:
            self._collect(iteration, wait=False)
        if iteration % self.stage_iters == 0:
            if self.pending_since is not None:  # the previous answer is still out: it comes first
                self._collect(iteration, wait=True)
            self.stage += 1
            if self.rank == 0:
                self._entry = self._evaluate(net, iteration, decide=True)
                self._submit()
            self.pending_since = iteration
            if not self.async_mode:
                self._collect(iteration, wait=True)

    # ---- rank 0: evaluate and decide ------------------------------------------------------
    def _evaluate(self, net, iteration: int, decide: bool) -> dict:
        started = time.perf_counter()
        outputs = self.val_set.restore(net, self.device)
        scores, errors = OrderedDict(), {}
        for expert in tqdm(self.experts, desc=f'stage {self.stage} experts', leave=False, disable=None):
            try:
                values = list(expert.score(outputs, self.val_set.gts, {
                    'stage': self.stage, 'names': self.val_set.names, 'agent_dir': self.log.path.parent}))
            except Exception as err:  # one broken expert must not stop a long run
                self.logger.warning(f'Expert {expert.name} failed at stage {self.stage}: {err!r}')
                values, errors[expert.name] = [None] * len(outputs), repr(err)
            if expert.kind == 'score' and all(v is None for v in values):
                errors.setdefault(expert.name, 'no finite score')
            scores[expert.name] = values
        weights = dict(self.repository.get_weights())
        record = StageRecord(stage=self.stage, iteration=iteration, weights=weights, scores=scores)
        self.history.append(record)
        entry = {'stage': self.stage, 'iteration': iteration, 'weights_before': weights, 'scores': scores,
                 'mean_scores': record.mean_scores(),
                 'directions': {e.name: 'lower' if e.lower_better else 'higher' for e in self.experts},
                 'experts': [{'name': e.name, 'lower_better': e.lower_better, 'kind': e.kind} for e in self.experts],
                 'images': self.val_set.names, 'valid': not errors, 'expert_errors': errors,
                 'policy': self.policy.name if decide else 'initial', 'fallback': None, 'superseded': False,
                 'eval_s': round(time.perf_counter() - started, 4)}
        log_scores(self.tb, entry, outputs)
        return entry

    def _submit(self) -> None:
        history = History(list(self.history.records))  # the main thread appends while we think
        self._submitted_at = time.perf_counter()
        self._future = self.executor.submit(self._decide, history)

    def _decide(self, history: History) -> dict:
        started = time.perf_counter()
        try:
            decision = self.policy.decide(history)
        except Exception as err:  # a policy bug must not cost the run
            return {'fallback': f'policy raised {err!r}', 'traceback': traceback.format_exc(limit=5),
                    'latency_s': round(time.perf_counter() - started, 4)}
        entry = decision.to_dict()
        entry['latency_s'] = round(entry.get('latency_s') or time.perf_counter() - started, 4)
        return entry

    def _result(self, wait: bool) -> Optional[dict]:
        """The decision's record fields, None while (asynchronously) still thinking."""
        if not wait and not self._future.done():
            return None
        remaining = self.budget_s - (time.perf_counter() - self._submitted_at)
        try:
            return self._future.result(timeout=max(0.0, remaining))
        except futures.TimeoutError:
            # The worker cannot be interrupted; a fresh one serves the next boundaries.
            self.executor.shutdown(wait=False)
            self.executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='loss-agent')
            return {'fallback': f'no decision within agent.boundary_budget_s={self.budget_s:g}s',
                    'latency_s': round(self.budget_s, 4)}

    # ---- all ranks: agree and apply ---------------------------------------------------------
    def _collect(self, iteration: int, wait: bool) -> None:
        message = None
        if self.rank == 0:
            decision = self._result(wait)
            if decision is not None:
                message = self._finish_entry(decision)
        message = self._broadcast(message)
        if message is None:
            return
        self.repository.set_weights(message)
        self.pending_since = None
        self.applied_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.applied_path, 'a', encoding='utf-8') as f:
            f.write(json.dumps({'stage': self.stage, 'from_iteration': iteration + 1, 'weights': message}) + '\n')
        if self.rank == 0:
            self._entry['applied_iteration'] = iteration + 1
            self._write(self._entry)
            self._future = self._entry = None

    def _finish_entry(self, decision: dict) -> dict:
        entry = self._entry
        weights_before = entry['weights_before']
        proposed = decision.pop('weights', None)
        entry.update(decision)
        problem = None if entry.get('fallback') else valid_weights(proposed, self.repository.names)
        if problem:
            entry['fallback'] = problem
        if entry.get('fallback'):
            entry['weights_after'] = dict(weights_before)
        else:
            entry['weights_after'] = OrderedDict((n, float(proposed[n])) for n in self.repository.names)
        return dict(entry['weights_after'])

    def _broadcast(self, message):
        if self.group is None:
            return message
        box = [message]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def _write(self, entry: dict) -> None:
        self.log.append(entry)
        log_decision(self.tb, entry, entry['applied_iteration'])
        self._report(entry)

    def _report(self, entry: dict) -> None:
        arrows = {'lower': '↓', 'higher': '↑'}
        scores = ' '.join(f'{name}{arrows[entry["directions"][name]]} '
                          + (f'{value:.4g}' if value is not None else 'n/a')
                          for name, value in entry['mean_scores'].items() if name in entry['directions'])
        ratio = lambda w: ':'.join(f'{v:.4g}' for v in w.values())  # noqa: E731
        line = (f'[agent] stage {entry["stage"]} @ iter {entry["iteration"]} | {scores} | '
                f'{":".join(entry["weights_before"])} {ratio(entry["weights_before"])} -> '
                f'{ratio(entry["weights_after"])} ({entry["policy"]}')
        if entry.get('fallback'):
            line += f', kept: {entry["fallback"]}'
        if entry['applied_iteration'] is None:
            line += ', not applied: training ended'
        elif entry['applied_iteration'] != entry['iteration'] + 1:
            line += f', applied from iter {entry["applied_iteration"]}'
        self.logger.info(line + f', eval {entry["eval_s"]:.2f}s, decision {entry.get("latency_s") or 0:.2f}s)')

    # ---- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain types only, so the training state loads with torch.load(weights_only=True)."""
        pending = None
        if self.pending_since is not None and self._entry is not None:
            pending = json.loads(json.dumps(self._entry, default=str))
        return {'stage': self.stage, 'started': self.started, 'history': self.history.to_list(),
                'weights': dict(self.repository.get_weights()), 'pending_since': self.pending_since,
                'pending_entry': pending, 'policy': self.policy.state_dict() if self.policy is not None else {}}

    def load_state_dict(self, state: dict, iteration: int) -> None:
        self.stage = int(state['stage'])
        self.started = bool(state['started'])
        self.history = History.from_list(state['history'])
        self.repository.set_weights(state['weights'])
        self.pending_since = state.get('pending_since')
        if self.rank != 0:
            return
        self.policy.load_state_dict(state.get('policy', {}))
        superseded = self.log.supersede_after(iteration)
        if self.pending_since is not None:  # the answer was lost with the process: ask again
            self._entry = state['pending_entry']
            self._submit()
        self.logger.info(f'Loss agent resumed at stage {self.stage} (iter {iteration}) with weights '
                         f'{dict(self.repository.get_weights())}; {superseded} later records marked superseded'
                         f'{"; re-asking the pending decision" if self.pending_since is not None else ""}')

    def close(self) -> None:
        """End of training (rank 0): record a decision still out, plot the run, release resources.

        A pending asynchronous decision is waited for (within the budget) so the last stage's
        scores reach the log; its weights are never applied (`applied_iteration: null`).
        """
        if self.rank != 0:
            return
        if self.pending_since is not None and self._future is not None:
            self._finish_entry(self._result(wait=True))
            self._entry['applied_iteration'] = None
            self.log.append(self._entry)
            self._report(self._entry)
            self.pending_since = self._future = self._entry = None
        self.executor.shutdown(wait=False)
        self.policy.close()
        if self.tb is not None:
            self.tb.close()
        plot_experiment(self.log.path, logger=self.logger)
