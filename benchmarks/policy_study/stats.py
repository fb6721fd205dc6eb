"""The study's pre-registered statistics (benchmarks/protocol.md), in plain Python.

    paired_t        two-sided paired t-test of per-seed gains against 0: mean, 95 % CI, p
    wilcoxon        two-sided Wilcoxon signed-rank test (exact permutation p for n <= 50, ties
                    included; the normal approximation above)
    holm            Holm's step-down adjustment of a family of p-values
    fieller         95 % Fieller interval of mean(a) / mean(b) from paired samples (may be
                    unbounded: then the denominator is not distinguishable from zero)
    power_n         seeds needed for a paired t-test's power at a given effect and sd (noncentral t)

scipy is not a dependency: the t and normal distributions are computed here (regularised
incomplete beta by continued fraction) and tests/test_study_stats.py checks them against scipy
when it is installed.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass


# ---- distributions -----------------------------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Numerical Recipes' betacf)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t (bisection on t_sf)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1.0 - t_sf(mid, df) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


# ---- tests -------------------------------------------------------------------------------------
@dataclass
class TTest:
    n: int
    mean: float
    sd: float
    ci: tuple[float, float]
    t: float
    p: float


def paired_t(gains: list[float], level: float = 0.95) -> TTest:
    """Two-sided one-sample t-test of the per-seed gains (method - baseline, same seed) against 0."""
    n = len(gains)
    mean = statistics.fmean(gains)
    if n < 2:
        return TTest(n, mean, math.nan, (math.nan, math.nan), math.nan, math.nan)
    sd = statistics.stdev(gains)
    se = sd / math.sqrt(n)
    half = t_ppf(0.5 + level / 2, n - 1) * se
    if se == 0:
        return TTest(
            n, mean, sd, (mean, mean), math.copysign(math.inf, mean) if mean else math.nan, 0.0 if mean else 1.0
        )
    t = mean / se
    return TTest(n, mean, sd, (mean - half, mean + half), t, min(1.0, 2 * t_sf(abs(t), n - 1)))


def wilcoxon(gains: list[float]) -> tuple[float, float]:
    """(W+, two-sided p) of the Wilcoxon signed-rank test; zeros dropped (scipy's zero_method 'wilcox').
    For n <= 50 the exact permutation distribution of the (average) ranks, ties included; above,
    the normal approximation with the tie correction and no continuity correction."""
    d = [g for g in gains if g != 0]
    n = len(d)
    if n == 0:
        return 0.0, 1.0
    order = sorted(range(n), key=lambda i: abs(d[i]))
    ranks = [0.0] * n
    i = 0
    while i < n:  # average ranks over ties of |d|
        j = i
        while j + 1 < n and abs(d[order[j + 1]]) == abs(d[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    w_plus = sum(r for r, x in zip(ranks, d) if x > 0)
    total = n * (n + 1) / 2
    if n <= 50:
        counts = {0: 1}  # doubled rank sums (average ranks are multiples of 1/2) -> number of sign patterns
        for r in ranks:
            step, nxt = int(round(2 * r)), dict(counts)
            for s2, c in counts.items():
                nxt[s2 + step] = nxt.get(s2 + step, 0) + c
            counts = nxt
        low = min(w_plus, total - w_plus)
        tail = sum(c for s2, c in counts.items() if s2 <= round(2 * low))
        return w_plus, min(1.0, 2 * tail / 2**n)
    mean = total / 2
    tie_term = sum(c**3 - c for c in (sum(1 for x in d if abs(x) == v) for v in set(abs(x) for x in d)))
    var = n * (n + 1) * (2 * n + 1) / 24 - tie_term / 48
    z = (w_plus - mean) / math.sqrt(var)
    return w_plus, min(1.0, 2 * norm_sf(abs(z)))


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input's keys."""
    items = sorted(pvalues.items(), key=lambda kv: kv[1])
    m, out, running = len(items), {}, 0.0
    for i, (key, p) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[key] = running
    return {k: out[k] for k in pvalues}


def fieller(num: list[float], den: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(ratio, low, high): Fieller's interval for mean(num) / mean(den) from paired samples.
    (-inf, inf) when the denominator's mean is not distinguishable from 0 at `level` (the set is
    then unbounded); the ratio is nan when mean(den) is 0."""
    n = len(num)
    a, b = statistics.fmean(num), statistics.fmean(den)
    ratio = a / b if b else math.nan
    if n < 2:
        return ratio, -math.inf, math.inf
    t = t_ppf(0.5 + level / 2, n - 1)
    v11 = statistics.variance(num) / n
    v22 = statistics.variance(den) / n
    v12 = sum((x - a) * (y - b) for x, y in zip(num, den)) / (n - 1) / n
    g = t * t * v22 / (b * b) if b else math.inf
    if g >= 1:
        return ratio, -math.inf, math.inf
    # a constant denominator (v22 = v12 = 0, g = 0): the numerator's t-interval over b
    disc = v11 - 2 * ratio * v12 + ratio * ratio * v22 - (g * (v11 - v12 * v12 / v22) if v22 > 0 else 0.0)
    half = t / abs(b) * math.sqrt(max(disc, 0.0))
    centre = ratio - g * v12 / v22 if v22 > 0 else ratio
    return ratio, (centre - half) / (1 - g), (centre + half) / (1 - g)


# ---- power -------------------------------------------------------------------------------------
def nct_sf(x: float, df: int, ncp: float, steps: int = 4000) -> float:
    """P(T' > x) for the noncentral t: the normal tail P(Z > x*sqrt(V/df) - ncp) averaged over
    V ~ chi2(df) (trapezoid rule over the bulk of V's density)."""
    hi = df + 40 * math.sqrt(2 * df)
    h = hi / steps
    log_norm = -(df / 2) * math.log(2) - math.lgamma(df / 2)
    total = 0.0
    for i in range(1, steps + 1):
        v = i * h
        dens = math.exp(log_norm + (df / 2 - 1) * math.log(v) - v / 2)
        total += (0.5 if i == steps else 1.0) * dens * norm_sf(x * math.sqrt(v / df) - ncp)
    return total * h


def power(n: int, delta: float, sd: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with n seeds at a true mean gain `delta`, per-seed sd `sd`."""
    df = n - 1
    crit = t_ppf(1 - alpha / 2, df)
    ncp = delta / sd * math.sqrt(n)
    return nct_sf(crit, df, ncp) + (1.0 - nct_sf(-crit, df, ncp))


def power_n(delta: float, sd: float, target: float = 0.8, alpha: float = 0.05, n_max: int = 1000) -> int | None:
    """The fewest seeds whose paired t-test reaches `target` power (None above n_max)."""
    for n in itertools.count(2):
        if n > n_max:
            return None
        if power(n, delta, sd, alpha) >= target:
            return n
