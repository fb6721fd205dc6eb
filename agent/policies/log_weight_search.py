"""The search in log-weight space that the adaptive and lookahead policies share.

A point is `{loss: log-weight}` over the *active* losses: those with a positive initial weight, less
the first loss when `anchor` is on (it keeps its initial weight and the others move relative to it).
The other losses keep their initial weights; a weight of 0 has no logarithm. Every point is clipped to
within `trust_region` of the initial log-weights (ln 10 = 2.3: within x10 and /10). Steps are
Gaussian with scale `sigma`, which the 1/5th success rule adapts: times `success_factor` after a
success, times its fourth root's inverse after a failure, within [sigma_min, sigma_max]. One seeded
RNG draws in the order of the losses, and its state and sigma are JSON, so a seed gives one
trajectory and a resumed run continues it.
"""

from __future__ import annotations

import math

from lossagent_errors import OptionError

from ..options import flag, number
from .rng import JsonRandom


class LogWeightSearch:
    def __init__(
        self, loss_names: list[str], initial_weights: dict[str, float], o: dict, seed: int, sigma_floor: float
    ):
        """`o`: the policy's options read with its defaults (sigma, sigma_min, sigma_max, success_factor,
        trust_region, anchor); `sigma_floor`: the least `sigma` and `sigma_max` it accepts."""
        self.sigma0 = number(o, 'sigma', sigma_floor, 10)
        self.sigma_min = number(o, 'sigma_min', 0, 10)
        self.sigma_max = number(o, 'sigma_max', sigma_floor, 10)
        if not self.sigma_min <= self.sigma0 <= self.sigma_max:
            raise OptionError('agent.policy.sigma: expected sigma_min <= sigma <= sigma_max')
        self.factor = number(o, 'success_factor', 1.0, 10)
        self.radius = number(o, 'trust_region', 0, 50)
        self.anchor = flag(o, 'anchor')
        self.loss_names = list(loss_names)
        self.initial_weights = dict(initial_weights)
        self.active = [
            n for i, n in enumerate(self.loss_names) if self.initial_weights[n] > 0 and not (self.anchor and i == 0)
        ]
        self.x0 = {n: math.log(self.initial_weights[n]) for n in self.active}
        self.rng = JsonRandom(seed)
        self.sigma = self.sigma0

    def log_weights(self, weights: dict[str, float]) -> dict[str, float]:
        """The active losses' log-weights of `weights` (a zero weight as log 1e-12)."""
        return {n: math.log(max(weights.get(n, 0.0), 1e-12)) for n in self.active}

    def clip(self, x: dict[str, float]) -> dict[str, float]:
        """`x` moved into the trust region around the initial log-weights."""
        return {n: min(self.x0[n] + self.radius, max(self.x0[n] - self.radius, x[n])) for n in self.active}

    def weights(self, x: dict[str, float]) -> dict[str, float]:
        """All losses' weights at point `x` (6 significant digits; the others at their initial weights)."""
        return {n: float(f'{math.exp(x[n]):.6g}') if n in x else self.initial_weights[n] for n in self.loss_names}

    def clipped_weights(self, x: dict[str, float]) -> dict[str, float]:
        """The weights of a proposed point, after clipping it into the trust region."""
        return self.weights(self.clip(x))

    def gaussian_step(self) -> dict[str, float]:
        """One N(0, sigma) draw per active loss, in the losses' order (reproducible)."""
        return {n: self.rng.gauss(0.0, self.sigma) for n in self.active}

    def succeeded(self) -> None:
        self.sigma = min(self.sigma_max, self.sigma * self.factor)

    def failed(self) -> None:
        self.sigma = max(self.sigma_min, self.sigma * self.factor**-0.25)

    def state_dict(self) -> dict:
        return {'rng': self.rng.state(), 'sigma': self.sigma}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state['rng'])
        self.sigma = float(state.get('sigma', self.sigma0))
