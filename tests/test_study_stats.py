"""The study's statistics with exact numbers (and against scipy when it is installed), its power
calculation, and the photo split (four disjoint sets, each photo loadable offline)."""

import itertools
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))
from policy_study.stats import fieller, holm, paired_t, power, power_n, t_ppf, wilcoxon  # noqa: E402

GAINS = [0.9, 1.7, 0.2, 0.5, 0.85]


def test_paired_t_exact():
    r = paired_t(GAINS)
    assert r.mean == pytest.approx(0.83, abs=1e-12)
    assert r.sd == pytest.approx(0.5630275304103699, abs=1e-12)
    assert r.t == pytest.approx(3.296351, abs=1e-6) and r.p == pytest.approx(0.030036, abs=1e-6)
    assert t_ppf(0.975, 4) == pytest.approx(2.776445, abs=1e-6)
    assert r.ci == pytest.approx(
        (0.83 - 2.776445 * r.sd / math.sqrt(5), 0.83 + 2.776445 * r.sd / math.sqrt(5)), abs=1e-5
    )


def test_wilcoxon_exact_with_and_without_ties():
    assert wilcoxon(GAINS) == (15.0, 0.0625)  # 5 of 5 positive: 2 / 2**5
    assert wilcoxon([1.0, -2.0, 3.0]) == (4.0, 0.75)  # W- = 2: 6 of 8 sign patterns as extreme
    # ties: the exact permutation distribution of the average ranks, checked by enumeration
    d = [0.5, -0.5, 1.0, 2.0, 2.0, -3.0]
    w, p = wilcoxon(d)
    ranks = [1.5, 1.5, 3, 4.5, 4.5, 6]
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=6)]
    low = min(w, 21 - w)
    assert w == 13.5 and p == 0.65625 == pytest.approx(2 * sum(x <= low for x in sums) / 64, abs=1e-15)
    assert wilcoxon([0.0, 0.0]) == (0.0, 1.0)


def test_holm_exact():
    assert holm({'a': 0.01, 'b': 0.04, 'c': 0.03, 'd': 0.5}) == pytest.approx(
        {'a': 0.04, 'b': 0.09, 'c': 0.09, 'd': 0.5}, abs=1e-15
    )
    assert holm({'a': 0.3, 'b': 0.6}) == {'a': 0.6, 'b': 0.6}


def test_fieller_bounded_and_unbounded():
    num, den = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0], [2.0, 2.1, 1.9, 2.2, 1.8, 2.0]
    ratio, lo, hi = fieller(num, den)
    assert ratio == pytest.approx(0.5, abs=1e-12) and lo < 0.5 < hi and hi - lo < 0.3
    # the last study: headroom +1.17 +- 1.32 is not distinguishable from 0 -> unbounded
    assert fieller([0.9, 1.7, 0.2, 0.5, 0.85], [1.2, 2.5, -0.3, 1.0, 1.4])[1:] == (-math.inf, math.inf)


def test_power_matches_the_noncentral_t():
    assert power(14, 0.5, 0.67) == pytest.approx(0.7316, abs=2e-3)
    assert power_n(0.5, 0.6685) == 17 and power_n(0.5, 0.6685, alpha=0.05 / 8) == 27


def test_against_scipy_when_installed():
    st = pytest.importorskip('scipy.stats')
    import numpy as np

    rng = np.random.RandomState(0)
    for n in (5, 12, 24):
        g = list(rng.normal(0.3, 0.7, n))
        ref = st.ttest_1samp(g, 0)
        assert paired_t(g).p == pytest.approx(ref.pvalue, rel=1e-6)
        assert wilcoxon(g)[1] == pytest.approx(st.wilcoxon(g).pvalue, rel=1e-9)
        nc, c = 0.5 / 0.67 * math.sqrt(n), st.t.ppf(0.975, n - 1)
        assert power(n, 0.5, 0.67) == pytest.approx(st.nct.sf(c, n - 1, nc) + st.nct.cdf(-c, n - 1, nc), abs=1e-6)


def test_photo_split_is_disjoint_and_offline():
    from policy_study.plan import photo_split
    from lossagent_data.skimage_dataset import load_photo

    split = photo_split()
    for (a, x), (b, y) in itertools.combinations(split.items(), 2):
        assert not set(x) & set(y), (a, b)
    assert len(split['selection']) == 4 and len(split['test']) == 6
    for name in split['selection'] + split['test']:
        img = load_photo(name)
        assert min(img.shape[:2]) >= 192 and img.shape[2] == 3  # one 192-px crop fits


def test_power_script_prints_the_protocols_numbers():
    out = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'policy_study' / 'power.py')],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert '80 % power at n = 17' in out and '80 % power at n = 27' in out


def test_fieller_with_a_constant_denominator_is_the_numerators_t_interval_over_it():
    num, b = [0.3, 0.5, 0.1, 0.4, 0.2], 2.0
    ratio, low, high = fieller(num, [b] * len(num))
    mean, half = statistics.fmean(num), t_ppf(0.975, 4) * statistics.stdev(num) / math.sqrt(5)
    assert ratio == pytest.approx(mean / b)
    assert (low, high) == pytest.approx(((mean - half) / b, (mean + half) / b))
