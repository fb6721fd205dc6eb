"""The stage hook: at every `agent.stage_iters` iterations, score the network and ask the policy.

Like an mmengine hook that changes hyperparameters at validation points, it owns no training
logic; `LossAgentModel` calls `start` before the first iteration and `after_iteration` after
each one. Only rank 0 restores the validation images, runs the experts and asks the policy;
the weights are broadcast so every rank applies the same ones at the same iteration.
Nothing that goes wrong here (expert error, NaN score, policy exception) stops training: the
previous weights are kept and the record says why.
"""
from __future__ import annotations

import math
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from agent import History, StageRecord, build_policy
from agent.decision_log import DecisionLog
from basicsr.utils import get_root_logger

from .agent_validation import AgentValidationSet
from .experts import build_experts
from agent import OptionError


def _positive_int(agent_opt: dict, key: str, default: int) -> int:
    value = agent_opt.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise OptionError(f'agent.{key} must be a positive integer, got {value!r}')
    return value


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
        self.stage_iters = _positive_int(agent_opt, 'stage_iters', 5000)
        self.rank = opt.get('rank', 0)
        self.world_size = opt.get('world_size', 1)
        self.logger = get_root_logger()
        self.history = History()
        self.stage = 0
        self.started = False
        self.log = DecisionLog(Path(experiment_root) / 'agent' / 'decisions.jsonl')
        self.policy = self.experts = self.val_set = None
        if self.rank == 0:
            # Config errors surface at start-up on rank 0, before any training time is spent.
            self.experts = build_experts(agent_opt.get('experts'), device)
            self.val_set = AgentValidationSet(agent_opt.get('dataset'), _positive_int(agent_opt, 'num_images', 10),
                                              int(agent_opt.get('image_seed', 0)), int(opt.get('scale', 1)))
            weights = repository.get_weights()
            self.policy = build_policy(agent_opt.get('policy', {'type': 'fixed'}), list(weights),
                                       list(weights.values()), [e.info for e in self.experts],
                                       seed=int(agent_opt.get('policy_seed', opt.get('manual_seed', 0))),
                                       task=agent_opt.get('task', 'image super-resolution'))
            self.logger.info(f'Loss agent: policy {self.policy.name}, {len(self.val_set)} validation images, '
                             f'experts {[(e.name, "lower" if e.lower_better else "higher") for e in self.experts]}, '
                             f'a stage every {self.stage_iters} iterations; log {self.log.path}')

    # ---- called by the model -------------------------------------------------------------
    def start(self, net: torch.nn.Module, iteration: int) -> None:
        """Stage 0: score the network before the agent changes anything."""
        if not self.started:
            self.started = True
            self._boundary(net, iteration, decide=False)

    def after_iteration(self, net: torch.nn.Module, iteration: int) -> None:
        if iteration % self.stage_iters == 0:
            self.stage += 1
            self._boundary(net, iteration, decide=True)

    # ---- one boundary ---------------------------------------------------------------------
    def _boundary(self, net, iteration: int, decide: bool) -> None:
        weights_before = self.repository.get_weights()
        weights_after = weights_before
        if self.rank == 0:
            record = self._evaluate_and_decide(net, iteration, weights_before, decide)
            weights_after = record['weights_after']
        weights_after = self._broadcast(weights_after)
        self.repository.set_weights(weights_after)

    def _evaluate_and_decide(self, net, iteration, weights_before, decide) -> dict:
        started = time.perf_counter()
        scores, errors = self._score(net)
        record = StageRecord(stage=self.stage, iteration=iteration, weights=dict(weights_before), scores=scores)
        self.history.append(record)
        entry = {'stage': self.stage, 'iteration': iteration, 'weights_before': dict(weights_before),
                 'scores': scores, 'mean_scores': record.mean_scores(),
                 'directions': {e.name: 'lower' if e.lower_better else 'higher' for e in self.experts},
                 'images': self.val_set.names, 'valid': not errors, 'expert_errors': errors,
                 'policy': self.policy.name if decide else 'initial', 'fallback': None, 'superseded': False}
        weights_after = dict(weights_before)
        if decide:
            weights_after, decision_entry = self._decide(weights_before)
            entry.update(decision_entry)
        entry['weights_after'] = weights_after
        entry['boundary_s'] = round(time.perf_counter() - started, 4)
        self.log.append(entry)
        self._report(entry)
        return entry

    def _score(self, net) -> tuple[dict, dict]:
        outputs = self.val_set.restore(net, self.device)
        context = {'stage': self.stage, 'names': self.val_set.names}
        scores, errors = OrderedDict(), {}
        for expert in self.experts:
            try:
                values = list(expert.score(outputs, self.val_set.gts, context))
            except Exception as err:  # one broken expert must not stop a long run
                self.logger.warning(f'Expert {expert.name} failed at stage {self.stage}: {err!r}')
                values, errors[expert.name] = [None] * len(outputs), repr(err)
            if expert.kind == 'score' and all(v is None for v in values):
                errors.setdefault(expert.name, 'no finite score')
            scores[expert.name] = values
        return scores, errors

    def _decide(self, weights_before) -> tuple[dict, dict]:
        started = time.perf_counter()
        try:
            decision = self.policy.decide(self.history)
        except Exception as err:  # a policy bug must not cost the run
            self.logger.warning(f'Policy {self.policy.name} raised at stage {self.stage}: {err!r}')
            return dict(weights_before), {'fallback': f'policy raised {err!r}',
                                          'traceback': traceback.format_exc(limit=5),
                                          'latency_s': round(time.perf_counter() - started, 4)}
        entry = decision.to_dict()
        entry.pop('weights', None)
        entry['latency_s'] = round(entry.get('latency_s') or time.perf_counter() - started, 4)
        problem = valid_weights(decision.weights, self.repository.names)
        if problem:
            entry['fallback'] = problem
            return dict(weights_before), entry
        return OrderedDict((n, float(decision.weights[n])) for n in self.repository.names), entry

    def _broadcast(self, weights: dict) -> dict:
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            box = [dict(weights) if self.rank == 0 else None]
            dist.broadcast_object_list(box, src=0)
            weights = box[0]
        return weights

    def _report(self, entry: dict) -> None:
        arrows = {'lower': '↓', 'higher': '↑'}
        scores = ' '.join(f'{name}{arrows[entry["directions"][name]]} '
                          + (f'{value:.4g}' if value is not None else 'n/a')
                          for name, value in entry['mean_scores'].items()
                          if name in entry['directions'])
        ratio = lambda w: ':'.join(f'{v:.4g}' for v in w.values())  # noqa: E731
        line = (f'[agent] stage {entry["stage"]} @ iter {entry["iteration"]} | {scores} | '
                f'{":".join(entry["weights_before"])} {ratio(entry["weights_before"])} -> '
                f'{ratio(entry["weights_after"])} ({entry["policy"]}')
        if entry.get('fallback'):
            line += f', kept: {entry["fallback"]}'
        self.logger.info(line + f', {entry["boundary_s"]:.2f}s)')

    # ---- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain types only, so the training state loads with torch.load(weights_only=True)."""
        return {'stage': self.stage, 'started': self.started, 'history': self.history.to_list(),
                'weights': dict(self.repository.get_weights()),
                'policy': self.policy.state_dict() if self.policy is not None else {}}

    def load_state_dict(self, state: dict, iteration: int) -> None:
        self.stage = int(state['stage'])
        self.started = bool(state['started'])
        self.history = History.from_list(state['history'])
        self.repository.set_weights(state['weights'])
        if self.policy is not None:
            self.policy.load_state_dict(state.get('policy', {}))
        if self.rank == 0:
            superseded = self.log.supersede_after(iteration)
            self.logger.info(f'Loss agent resumed at stage {self.stage} (iter {iteration}) with weights '
                             f'{dict(self.repository.get_weights())}; {superseded} later records marked superseded')

    def close(self) -> None:
        if self.policy is not None:
            self.policy.close()

