"""Lookahead: try K weightings from the same state for P iterations, keep the one the experts prefer.

Comparing stages with one another mostly measures training progress and the GAN's stage-to-stage
swings; comparing candidates trained from *one* state on the *same* batches with the *same*
random numbers (common random numbers) measures the weights. At a boundary this policy proposes
K candidate weightings, the first of them the current weights; the stage hook trains each for
`probe_iters` iterations from the boundary's state (lossagent_hook/lookahead_loop.py) and scores them
with the experts; `choose` keeps the best by the combined objective (agent/objective.py, experts
on a common scale), and training continues from that candidate's state, so its P iterations are
part of the run. The other candidates cost (K-1)*P extra iterations per stage.

Proposers (`proposer:`):
  adaptive  K-1 perturbations of the current log-weights, in antithetic pairs, step `sigma`
            adapted by the 1/5th success rule (a perturbation winning counts as a success), every
            candidate within `trust_region` of the initial weights (log_weight_search.py, shared
            with the adaptive policy);
  llm       the llm policy's answers (agent.policy.llm: its options), asked K-1 times with
            different sampling seeds; the prompt's history shows the probes of earlier stages;
  hybrid    the hybrid policy's two proposals (agent.policy.hybrid: its options): the optimizer's and,
            when it differs, the LLM's that reviewed it (agent/policies/hybrid_policy.py); with the
            current weights at most 3 candidates (`candidates` does not apply), and the measurement
            decides, so a weak LLM cannot do worse than its optimizer on the probes. `info` names the
            candidates (`labels`: current, optimizer, llm) and the winner's (`winner_label`); the
            optimizer follows the winner's weights at the next boundary.

`sigma_adapt: false` keeps the step at `sigma` (no 1/5th rule): with `min_gain` 0 and two
challengers, noise alone wins most rounds and the adapted step drifts up to `sigma_max`. Each
decision's info says how many training iterations went into discarded candidates
(`discarded_iters`, (candidates trained - 1) * P) and the run's total so far (`discarded_iters_total`):
the policy's real extra compute.

A candidate whose probe went non-finite (a skipped update, an invalid score) is discarded; when
no candidate is usable the current weights are kept and the record says why.
"""

from __future__ import annotations

import contextlib
import math

from lossagent_errors import OptionError

from ..objective import NORMALIZATIONS, stage_objective
from ..options import choice, flag, nested, number, read_options
from ..record import History, ProbeResult
from .base import Decision, LossPolicy
from .log_weight_search import LogWeightSearch
from .registry import POLICY_REGISTRY, register_policy

LOOKAHEAD_DEFAULTS = {
    'candidates': 3,  # K: weightings tried at each boundary (the current one included)
    'probe_iters': 10,  # P: iterations each candidate trains from the boundary's state
    'proposer': 'adaptive',  # adaptive | llm | hybrid
    'sigma': 0.5,  # adaptive: initial perturbation in log-weight space (0.5 ~ x1.65)
    'sigma_min': 0.05,
    'sigma_max': 1.5,
    'success_factor': 1.5,  # 1/5th rule: sigma *= f when a perturbation wins, f**-0.25 otherwise
    'sigma_adapt': True,  # false: the step stays at sigma (no 1/5th rule, no drift)
    'trust_region': 2.3,  # max |log w - log w_initial| per loss (ln 10)
    'anchor': True,  # keep the first loss at its initial weight (the others are relative)
    'normalize': 'zscore',  # how experts are put on a common scale (agent/objective.py)
    'probe_network': 'net_g',  # net_g | ema: the generator a candidate is scored on (an EMA would hide
    # most of P iterations' difference)
    'min_gain': 0.0,  # a perturbation must beat the current weights by this (in objective units)
    'llm': {},  # proposer llm: the llm policy's options (base_url, model, ...)
    'hybrid': {},  # proposer hybrid: the hybrid policy's options (optimizer, backend, model_path, ...)
}
PROPOSERS = ('adaptive', 'llm', 'hybrid')


@register_policy('lookahead')
class LookaheadPolicy(LossPolicy):
    needs_probes = True

    def __init__(self, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        super().__init__(loss_names, initial_weights, experts, opt, seed, task)
        o = read_options(self.opt, LOOKAHEAD_DEFAULTS)
        self.candidates = number(o, 'candidates', 2, 16, integer=True)
        self.probe_iters = number(o, 'probe_iters', 1, 10**6, integer=True)
        self.proposer = choice(o, 'proposer', PROPOSERS)
        self.search = LogWeightSearch(self.loss_names, self.initial_weights, o, self.seed, sigma_floor=1e-3)
        self.normalize = choice(o, 'normalize', NORMALIZATIONS)
        self.probe_network = choice(o, 'probe_network', ('net_g', 'ema'))
        self.min_gain = number(o, 'min_gain', 0, math.inf)
        self.sigma_adapt = flag(o, 'sigma_adapt')
        self.discarded_iters = 0  # training iterations spent on candidates the run did not continue from
        if not any(e.kind != 'text' for e in self.experts):
            raise OptionError('agent.experts: the lookahead policy compares candidates by score experts; it has none')
        self.wins = 0
        self.rounds = 0
        self.llm = None
        if self.proposer in ('llm', 'hybrid'):  # the proposer is that policy, built from its options
            key = self.proposer
            if not isinstance(o[key], dict):
                raise OptionError(f"agent.policy.{key}: got {o[key]!r}; expected the {key} policy's options")
            # the hybrid's errors name agent.policy.hybrid.<key>; the llm proposer's keep their older form
            with nested(key) if key == 'hybrid' else contextlib.nullcontext():
                self.llm = POLICY_REGISTRY.get(key)(loss_names, initial_weights, experts, o[key], seed, task)
            if key == 'hybrid':
                self.candidates = 3  # the current weights and the two proposals

    @property
    def sigma(self) -> float:
        return self.search.sigma

    @classmethod
    def check_options(cls, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        o = dict(opt or {})
        sets = {key: o.pop(key, {}) for key in ('llm', 'hybrid')}
        proposer = choice({'proposer': o.get('proposer', 'adaptive')}, 'proposer', PROPOSERS)
        cls(loss_names, initial_weights, experts, opt={**o, 'proposer': 'adaptive'}, seed=seed, task=task).close()
        if proposer in sets:  # its options, without connecting to its server or loading its model
            if not isinstance(sets[proposer], dict):
                raise OptionError(
                    f"agent.policy.{proposer}: got {sets[proposer]!r}; expected the {proposer} policy's options"
                )
            with nested(proposer) if proposer == 'hybrid' else contextlib.nullcontext():
                POLICY_REGISTRY.get(proposer).check_options(
                    loss_names, initial_weights, experts, sets[proposer], seed, task
                )

    # ---- what the stage hook calls ---------------------------------------------------------
    def propose(self, history: History) -> tuple[list[dict], dict]:
        """K weightings (the current ones first) and what the proposer said (for the record)."""
        current = self.current_weights(history)
        if self.proposer == 'hybrid':
            return self._propose_hybrid(history, current)
        if self.llm is not None:
            return self._propose_llm(history, current)
        out, pairs = [current], (self.candidates - 1 + 1) // 2
        centre = self.search.log_weights(current)
        for _ in range(pairs):
            step = self.search.gaussian_step()
            for sign in (1.0, -1.0):
                if len(out) < self.candidates:
                    out.append(self.search.clipped_weights({n: centre[n] + sign * step[n] for n in self.search.active}))
        return out, {'proposer': 'adaptive', 'sigma': self.sigma}

    def _propose_llm(self, history: History, current: dict) -> tuple[list[dict], dict]:
        out, notes = [current], []
        for k in range(self.candidates - 1):
            decision = self.llm.decide(history, variant=k + 1)
            notes.append({'fallback': decision.fallback, 'answers': decision.answers, 'latency_s': decision.latency_s})
            if decision.fallback is None and decision.weights not in out:
                out.append(decision.weights)
        return out, {'proposer': 'llm', 'asked': notes}

    def _propose_hybrid(self, history: History, current: dict) -> tuple[list[dict], dict]:
        decision = self.llm.decide(history)
        out, labels = [current], ['current']
        for label, weights in (('optimizer', decision.info.get('optimizer_proposal')), ('llm', decision.weights)):
            if weights is not None and weights not in out:
                out.append(dict(weights))
                labels.append(label)
        info = {k: v for k, v in decision.info.items() if k not in ('per_image', 'thoughts', 'errors', 'targets')}
        note = {'fallback': decision.fallback, 'answers': decision.answers, 'latency_s': decision.latency_s}
        return out, {'proposer': 'hybrid', 'labels': labels, 'hybrid': info, 'asked': [note]}

    def choose(self, history: History, probes: list[ProbeResult], proposal_info: dict) -> Decision:
        """The winner among the probed candidates (the first is the current weights)."""
        reference = history.last
        scored = []
        for probe in probes:
            value = None
            if probe.valid:
                value, _ = stage_objective(
                    probe.as_record(reference),
                    reference,
                    self.experts,
                    history=history,
                    extra=probes,
                    normalize=self.normalize,
                )
            probe.objective = value
            if value is not None:
                scored.append(probe)
        discarded = (len(probes) - 1) * self.probe_iters  # every candidate trains P; one is continued
        self.discarded_iters += discarded
        info = {
            **proposal_info,
            'candidates': len(probes),
            'probe_iters': self.probe_iters,
            'discarded_iters': discarded,
            'discarded_iters_total': self.discarded_iters,
        }
        if not scored:
            return Decision(
                weights=dict(probes[0].weights), policy=self.name, info=info, fallback='no candidate gave finite scores'
            )
        incumbent = probes[0] if probes[0] in scored else None
        best = max(scored, key=lambda p: p.objective)
        if incumbent is not None and best is not incumbent and best.objective < incumbent.objective + self.min_gain:
            best = incumbent
        winner = probes.index(best)
        self.rounds += 1
        if self.proposer == 'adaptive':  # the 1/5th rule on perturbations winning
            if winner > 0:
                self.wins += 1
                if self.sigma_adapt:
                    self.search.succeeded()
            elif self.sigma_adapt:
                self.search.failed()
        info.update(winner=winner, objectives=[p.objective for p in probes], sigma_after=self.sigma)
        if 'labels' in info:
            info['winner_label'] = info['labels'][winner]
        return Decision(weights=dict(best.weights), policy=self.name, info=info)

    def decide(self, history: History) -> Decision:
        raise RuntimeError('the lookahead policy decides through the stage hook (propose, probe, choose)')

    def state_dict(self) -> dict:
        return {
            **self.search.state_dict(),
            'wins': self.wins,
            'rounds': self.rounds,
            'discarded_iters': self.discarded_iters,
            'llm': self.llm.state_dict() if self.llm is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.search.load_state_dict(state)
        self.wins, self.rounds = int(state.get('wins', 0)), int(state.get('rounds', 0))
        self.discarded_iters = int(state.get('discarded_iters', 0))
        if self.llm is not None and state.get('llm'):
            self.llm.load_state_dict(state['llm'])

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()


def probe_overhead(policy: LossPolicy | None, stage_iters: int) -> float:
    """(K-1)*P / stage_iters: the extra training a lookahead policy costs (0 for the others)."""
    k, p = getattr(policy, 'candidates', 1), getattr(policy, 'probe_iters', 0)
    return (k - 1) * p / stage_iters if p else 0.0
