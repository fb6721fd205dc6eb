"""The reading test: can a policy read one weight's effect off a history? No training.

Each case is a synthetic history of `STAGES` + 1 boundaries in which only one loss weight (the
target, never the first loss) moves and one expert's score is a monotone function of it: moving the
target one way (`better`) improves the score, plus Gaussian noise (none / low / high, in units of
one stage's effect). The factors are crossed: 3 and 5 losses x noise x the better direction (up /
down) x the trajectory (rising: the target grew every stage; falling: it shrank; zigzag: it
alternated), and the expert alternates between a lower-better one (NIQE) and a higher-better one
(CLIPIQA), so that neither "continue the trend", "always raise it" nor "always lower it" beats
chance. The right decision moves the target the `better` way.

A move is read on the target's ratio to the first loss (Adam's step barely depends on the loss's
overall scale, so doubling every weight changes nothing): up or down when the ratio changes by more
than `TOLERANCE` (relative), unchanged otherwise.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from agent import ExpertInfo, History, StageRecord

STAGES = 5
STEP = math.log(1.25)  # the target's log-change per stage (x1.25 or /1.25)
TOLERANCE = 1e-3
NOISE = {'none': 0.0, 'low': 0.2, 'high': 0.6}  # noise sd in units of one stage's effect on the score
LOSSES = {
    3: (('L1', 'SSIM', 'GAN'), (1.0, 0.5, 0.01)),
    5: (('L1', 'MSE', 'SSIM', 'GAN', 'LPIPS'), (1.0, 0.2, 0.5, 0.01, 0.1)),
}
# (name, lower_better, base score, its change for one stage's move of the target the better way)
EXPERTS = (('NIQE', True, 5.0, 0.25), ('CLIPIQA', False, 0.5, 0.02))
SHAPES = {'rising': (1,) * STAGES, 'falling': (-1,) * STAGES, 'zigzag': (1, -1, 1, -1, 1)}


@dataclass(frozen=True)
class Case:
    n_losses: int
    noise: str
    better: str  # 'up' | 'down': the direction of the target that improves the score
    shape: str
    expert: int  # index into EXPERTS
    target: str
    seed: int

    @property
    def key(self) -> str:
        return f'{self.n_losses}L-{self.noise}-{self.better}-{self.shape}-{EXPERTS[self.expert][0]}-{self.target}'

    def experts(self) -> list[ExpertInfo]:
        name, lower, _, _ = EXPERTS[self.expert]
        return [ExpertInfo(name, lower_better=lower)]

    def history(self) -> History:
        names, initial = LOSSES[self.n_losses]
        name, lower, base, effect = EXPERTS[self.expert]
        rng = random.Random(f'reading-{self.key}-{self.seed}')
        log_w, records = 0.0, []
        for k in range(STAGES + 1):
            if k:
                log_w += SHAPES[self.shape][k - 1] * STEP
            weights = {n: (w * math.exp(log_w) if n == self.target else w) for n, w in zip(names, initial)}
            weights = {n: float(f'{w:.6g}') for n, w in weights.items()}
            gain = (1 if self.better == 'up' else -1) * log_w / STEP * effect  # improvement, in score units
            noise = rng.gauss(0.0, NOISE[self.noise] * effect) if k else 0.0
            score = base + (-gain if lower else gain) + noise
            records.append(
                StageRecord(
                    k,
                    50 * k,
                    weights,
                    {name: [round(score, 4)]},
                    experts=self.experts(),
                    policy='initial' if k == 0 else 'synthetic',
                )
            )
        return History(records)


def cases(reps: int = 1) -> list[Case]:
    """Every crossing of the factors, `reps` times with other noise draws and targets."""
    out = []
    for rep in range(reps):
        for n in sorted(LOSSES):
            names = LOSSES[n][0][1:]
            for noise in NOISE:
                for better in ('up', 'down'):
                    for shape in SHAPES:
                        i = len(out)
                        out.append(Case(n, noise, better, shape, i % len(EXPERTS), names[(i + rep) % len(names)], rep))
    return out


def move(case: Case, current: dict, proposed: dict) -> str:
    """'up', 'down' or 'none': how the proposal moved the target's ratio to the first loss."""
    first = LOSSES[case.n_losses][0][0]
    if current[first] <= 0 or proposed.get(first, 0) <= 0:
        before, after = current[case.target], proposed.get(case.target, 0.0)
    else:
        before, after = current[case.target] / current[first], proposed[case.target] / proposed[first]
    if after > before * (1 + TOLERANCE):
        return 'up'
    if after < before * (1 - TOLERANCE):
        return 'down'
    return 'none'


def score(decisions: list[tuple[Case, dict, dict]]) -> dict:
    """From (case, current weights, proposed weights): the fraction of decisions that moved the target
    the right way (chance 50 % for a policy that always moves), that changed nothing, the fraction right
    among those that moved, and the counts."""
    moves = [(c, move(c, cur, prop)) for c, cur, prop in decisions]
    n = len(moves)
    right = sum(m == c.better for c, m in moves)
    unchanged = sum(m == 'none' for _, m in moves)
    moved = n - unchanged
    return {
        'n': n,
        'right': right / n if n else math.nan,
        'unchanged': unchanged / n if n else math.nan,
        'right_of_moved': right / moved if moved else math.nan,
        'n_right': right,
        'n_moved': moved,
    }


LEVELS = {'noise': list(NOISE), 'n_losses': sorted(LOSSES), 'shape': list(SHAPES), 'better': ['up', 'down']}


def breakdown(decisions: list[tuple[Case, dict, dict]], factor: str) -> dict:
    """`score` per level of one factor of the cases ('noise', 'n_losses', 'shape', 'better'), in LEVELS' order."""
    levels: dict = {level: [] for level in LEVELS[factor]}
    for d in decisions:
        levels[getattr(d[0], factor)].append(d)
    return {level: score(ds) for level, ds in levels.items() if ds}
