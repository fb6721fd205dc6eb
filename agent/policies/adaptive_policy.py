"""A non-LLM policy fed by the same expert scores, searching in log-weight space.

Two strategies (`strategy:`):

`es` (default): a (1+1) evolution strategy on log-weights.

It keeps an incumbent (the best weights seen by the objective, `agent/objective.py`),
trains one perturbed candidate per stage, and keeps the candidate as the new incumbent
when the stage's objective beat the incumbent's by `min_improvement`; otherwise it goes
back to perturbing the incumbent. The step size follows the 1/5th success rule (grow by
`success_factor` on success, shrink by its fourth root on failure), and every candidate
stays within a trust region of `trust_region` (in log space; ln 10 = 2.3 means within
x10 / /10 of the initial weights). Training progress moves the objective even under
fixed weights, so after `patience` failures in a row the incumbent's value is re-measured
from the latest stage instead of chasing a level reached earlier. Seeded and resumable.

`paired`: antithetic probes scored by what each stage changed. Comparing objective *levels*
across stages mostly measures training progress (and the GAN's stage-to-stage swings), so
here a stage is scored by its change r_k = f_k - f_(k-1). Around a centre x the policy trains
x + s*sigma*u, then x - s*sigma*u (u a random +-1 vector, s alternating from pair to pair so
that the decay of progress favours neither sign), and estimates the slope along u from
d = r(+) - r(-). The centre moves along u by `max_move` * clip(d / rms(d over all pairs so far),
-1, 1): a trust-region step whose size is scaled by how the difference compares with the noise
seen so far, and every point stays within `trust_region` of the initial weights. A stage without
valid scores restarts the pair. Seeded and resumable.

`signs: random` (paired only) is the study's control for "does the signal matter?": each pair's
move keeps the size the data gave it (`max_move` * min(1, |d| / rms)) but takes a seeded random
sign from a stream of its own, so the probe directions are the same draws as with `signs: data`.

Both strategies move in the log-weight space of `log_weight_search.py` (which losses move, the
trust region, sigma and its 1/5th rule, the seeded draws), shared with the lookahead policy.
"""

from __future__ import annotations

import math

from lossagent_errors import OptionError

from ..objective import NORMALIZATIONS, stage_objective
from ..options import choice, number, read_options
from ..record import History
from .base import Decision, LossPolicy
from .log_weight_search import LogWeightSearch
from .registry import register_policy
from .rng import JsonRandom

ADAPTIVE_DEFAULTS = {
    'strategy': 'es',  # es: (1+1)-ES on stage objectives; paired: antithetic probes on stage changes
    'sigma': 0.3,  # initial step in log-weight space (0.3 ~ x1.35)
    'sigma_min': 0.02,
    'sigma_max': 1.0,
    'success_factor': 1.5,  # 1/5th rule: sigma *= f on success, f**-0.25 on failure
    'trust_region': 2.3,  # max |log w - log w_initial| per loss
    'anchor': True,  # keep the first loss at its initial weight (the others are relative)
    'normalize': 'zscore',  # experts on a common scale: zscore | relative (agent/objective.py)
    'min_improvement': 0.0,  # a candidate must beat the incumbent by this much (noise margin)
    'patience': 3,  # failures in a row before re-measuring the incumbent's value
    'max_move': 0.5,  # paired: largest move of the centre per pair of probes (log space)
    'signs': 'data',  # paired: data (the move's sign from the probes) | random (a control: a coin's)
}


@register_policy('adaptive')
class AdaptivePolicy(LossPolicy):
    def __init__(self, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        super().__init__(loss_names, initial_weights, experts, opt, seed, task)
        o = read_options(self.opt, ADAPTIVE_DEFAULTS)
        self.strategy = choice(o, 'strategy', ('es', 'paired'))
        self.max_move = number(o, 'max_move', 0, 50)
        self.search = LogWeightSearch(self.loss_names, self.initial_weights, o, self.seed, sigma_floor=1e-6)
        self.margin = number(o, 'min_improvement', 0, math.inf)
        self.patience = number(o, 'patience', 1, 10**6, integer=True)
        self.normalize = choice(o, 'normalize', NORMALIZATIONS)
        self.signs = choice(o, 'signs', ('data', 'random'))
        if self.signs == 'random' and self.strategy != 'paired':
            raise OptionError('agent.policy.signs: random applies to strategy: paired only')
        # a stream of its own, so the probe directions (self.search.rng) are the data arm's
        self.sign_rng = JsonRandom(f'signs-{self.seed}') if self.signs == 'random' else None
        if not any(e.kind != 'text' and e.weight > 0 for e in self.experts):
            raise OptionError('agent.experts: the adaptive policy needs a score expert with a positive weight')
        if any(w < 0 for w in self.initial_weights.values()):
            raise OptionError('agent.policy: the adaptive policy needs non-negative initial weights')
        self.best = None  # incumbent log-weights {name: float}
        self.f_best = None
        self.fails = 0
        self.successes = 0
        self.evals = 0
        # paired strategy
        self.center = None  # log-weights {name: float}
        self.u = None  # current probe direction {name: +-1}
        self.sign = 1.0  # sign of the first probe of the current pair
        self.phase = 0  # 0: no probe out; 1: first probe trained next; 2: second probe trained next
        self.r_first = None
        self.d_sq = []  # squared differences of past pairs (the noise scale)

    def decide(self, history: History) -> Decision:
        current = self.current_weights(history)
        if len(history) < 2:
            return Decision(weights=current, policy=self.name, fallback='no trained stage yet')
        if self.strategy == 'paired':
            return self._decide_paired(history, current)
        f, gains = stage_objective(history.last, history.records[0], self.experts, history, normalize=self.normalize)
        if f is None:
            return Decision(
                weights=current,
                policy=self.name,
                info={'gains': gains},
                fallback=f'no valid expert scores at stage {history.last.stage}',
            )
        trained = self.search.log_weights(history.last.weights)
        self.evals += 1
        if self.best is None:
            outcome = 'start'
            self.best, self.f_best = trained, f
        elif f > self.f_best + self.margin:
            outcome = 'accepted'
            self.best, self.f_best = trained, f
            self.successes += 1
            self.fails = 0
            self.search.succeeded()
        else:
            outcome = 'rejected'
            self.fails += 1
            self.search.failed()
            if self.fails >= self.patience:
                outcome = 'rejected, incumbent re-measured'
                self.f_best, self.fails = f, 0
        step = self.search.gaussian_step()
        weights = self.search.clipped_weights({n: self.best[n] + step[n] for n in self.search.active})
        info = {
            'objective': f,
            'gains': gains,
            'outcome': outcome,
            'incumbent_objective': self.f_best,
            'incumbent': self.search.weights(self.best),
            'sigma': self.search.sigma,
        }
        return Decision(weights=weights, policy=self.name, info=info)

    def _decide_paired(self, history: History, current: dict) -> Decision:
        ref = history.records[0]
        f, gains = stage_objective(history.last, ref, self.experts, history, normalize=self.normalize)
        prev = history.records[-2]
        f_prev = 0.0 if prev is ref else stage_objective(prev, ref, self.experts, history, normalize=self.normalize)[0]
        if self.center is None:
            self.center = self.search.log_weights(current)
        if f is None:
            self.phase = 0  # the probe was not measured: a new pair starts at the next valid stage
            return Decision(
                weights=current,
                policy=self.name,
                info={'gains': gains},
                fallback=f'no valid expert scores at stage {history.last.stage}',
            )
        self.evals += 1
        info = {'objective': f, 'gains': gains}
        if f_prev is None:
            self.phase = 0  # the stage's change cannot be scored: start a new pair now
        else:
            info['change'] = r = f - f_prev
        if self.phase == 1:
            self.r_first, self.phase = r, 2
            info['outcome'] = 'first probe measured'
            return Decision(weights=self._probe(-self.sign), policy=self.name, info=info)
        if self.phase == 2:
            d = self.sign * (self.r_first - r)  # r(+) - r(-)
            self.d_sq.append(d * d)
            scale = math.sqrt(sum(self.d_sq) / len(self.d_sq))
            move = self.max_move * max(-1.0, min(1.0, d / scale)) if scale > 0 else 0.0
            if self.sign_rng is not None:
                info['data_move'] = move
                move = abs(move) * (1.0 if self.sign_rng.random() < 0.5 else -1.0)
            self.center = self.search.clip({n: self.center[n] + move * self.u[n] for n in self.search.active})
            if move != 0:
                self.successes += 1  # pairs that moved the centre
            self.sign = -self.sign
            info.update(outcome='pair measured', difference=d, move=move)
        else:
            info['outcome'] = 'start'
        self.u = {n: (1.0 if self.search.rng.random() < 0.5 else -1.0) for n in self.search.active}
        self.phase = 1
        info.update(centre=self.search.weights(self.center), direction=dict(self.u), sigma=self.search.sigma)
        return Decision(weights=self._probe(self.sign), policy=self.name, info=info)

    def follow(self, trained: dict[str, float]) -> None:
        """The last stage trained `trained` instead of this policy's proposal (the hybrid policy's LLM
        edited it, a lookahead kept another candidate, a person changed it). `es` needs nothing: it
        takes the candidate it scores from the history, so `trained` competes with the incumbent like
        any candidate. `paired`: the stage's change measures no probe of the pair, so the pair restarts
        around `trained` (the centre is where training now is)."""
        if self.strategy == 'paired':
            self.center = self.search.clip(self.search.log_weights(trained))
            self.phase = 0

    def _probe(self, sign: float) -> dict:
        sigma = self.search.sigma
        return self.search.clipped_weights({n: self.center[n] + sign * sigma * self.u[n] for n in self.search.active})

    def state_dict(self) -> dict:
        return {
            **self.search.state_dict(),
            'best': self.best,
            'f_best': self.f_best,
            'fails': self.fails,
            'successes': self.successes,
            'evals': self.evals,
            'center': self.center,
            'u': self.u,
            'sign': self.sign,
            'phase': self.phase,
            'r_first': self.r_first,
            'd_sq': list(self.d_sq),
            **({'sign_rng': self.sign_rng.state()} if self.sign_rng is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.search.load_state_dict(state)
        self.best = {k: float(v) for k, v in state['best'].items()} if state.get('best') is not None else None
        self.f_best = state.get('f_best')
        self.fails = int(state.get('fails', 0))
        self.successes = int(state.get('successes', 0))
        self.evals = int(state.get('evals', 0))
        self.center = {k: float(v) for k, v in state['center'].items()} if state.get('center') is not None else None
        self.u = {k: float(v) for k, v in state['u'].items()} if state.get('u') is not None else None
        self.sign = float(state.get('sign', 1.0))
        self.phase = int(state.get('phase', 0))
        self.r_first = state.get('r_first')
        self.d_sq = [float(v) for v in state.get('d_sq', [])]
        if self.sign_rng is not None and state.get('sign_rng') is not None:
            self.sign_rng.set_state(state['sign_rng'])
