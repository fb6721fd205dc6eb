"""The decision exam (benchmarks/exam.py): the reading test's cases and exact scoring, the policy list,
a few real decisions of the embedded model, and the whole exam's smoke (`--quick`) end to end."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))

from decision_exam import policies, reading  # noqa: E402
from decision_exam.counterfactual import oracle_grid, weights_key  # noqa: E402
from decision_exam.report import oracle_fraction, wilson  # noqa: E402


def case(**changes):
    base = dict(n_losses=3, noise='none', better='up', shape='rising', expert=0, target='SSIM', seed=0)
    return reading.Case(**{**base, **changes})


W = {'L1': 1.0, 'SSIM': 0.5, 'GAN': 0.01}


def test_a_move_is_read_on_the_ratio_to_the_first_loss():
    c = case()
    assert reading.move(c, W, {**W, 'SSIM': 0.6}) == 'up'
    assert reading.move(c, W, {**W, 'SSIM': 0.4}) == 'down'
    assert reading.move(c, W, {**W, 'GAN': 0.5}) == 'none'  # another weight moved
    assert reading.move(c, W, {n: 2 * v for n, v in W.items()}) == 'none'  # the same ratios
    assert reading.move(c, W, {**W, 'L1': 2.0}) == 'down'  # SSIM / L1 halved
    assert reading.move(c, W, {**W, 'SSIM': 0.5 * (1 + 0.5 * reading.TOLERANCE)}) == 'none'


def test_the_score_counts_right_unchanged_and_moved_exactly():
    up, down = case(better='up'), case(better='down')
    decisions = [
        (up, W, {**W, 'SSIM': 0.7}),  # right
        (up, W, {**W, 'SSIM': 0.3}),  # wrong
        (down, W, {**W, 'SSIM': 0.3}),  # right
        (down, W, dict(W)),  # unchanged
    ]
    s = reading.score(decisions)
    assert s == {'n': 4, 'right': 0.5, 'unchanged': 0.25, 'right_of_moved': 2 / 3, 'n_right': 2, 'n_moved': 3}
    by = reading.breakdown(decisions, 'better')
    assert by['up']['right'] == 0.5 and by['down']['unchanged'] == 0.5
    assert math.isnan(reading.score([])['right'])


def test_no_blind_strategy_beats_chance_and_the_effect_is_in_the_history():
    cases = reading.cases()
    assert len(cases) == 2 * 3 * 2 * 3
    blind = {
        'always up': lambda c, h: 'up',
        'always down': lambda c, h: 'down',
        'follow the trend': lambda c, h: (
            'up' if h.records[-1].weights[c.target] > h.records[-2].weights[c.target] else 'down'
        ),
        'back to the start': lambda c, h: (
            'up' if h.records[-1].weights[c.target] < h.records[0].weights[c.target] else 'down'
        ),
    }
    for name, strategy in blind.items():
        decisions = []
        for c in cases:
            h = c.history()
            current = dict(h.last.weights)
            factor = 1.2 if strategy(c, h) == 'up' else 1 / 1.2
            decisions.append((c, current, {**current, c.target: current[c.target] * factor}))
        assert reading.score(decisions)['right'] == 0.5, name
    for c in cases:  # without noise, every stage's score moves the way its target's move implies
        if c.noise != 'none':
            continue
        h = c.history()
        lower = c.experts()[0].lower_better
        for a, b in zip(h.records, h.records[1:]):
            grew = b.weights[c.target] > a.weights[c.target]
            name = c.experts()[0].name
            improved = (b.scores[name][0] < a.scores[name][0]) if lower else (b.scores[name][0] > a.scores[name][0])
            assert improved == (grew == (c.better == 'up'))
            assert all(b.weights[n] == a.weights[n] for n in b.weights if n != c.target)


def test_the_hybrid_joins_only_when_registered(monkeypatch):
    llm = policies.llm_options()
    labels = [e.label for e in policies.exam_entries(llm)]
    assert 'hybrid' not in labels or 'hybrid' in policies.POLICY_REGISTRY
    monkeypatch.setattr(policies, 'POLICY_REGISTRY', {'hybrid': object})
    entries = policies.exam_entries(llm)
    assert entries[-1].label == 'hybrid' and entries[-1].opt['type'] == 'hybrid'
    default = [e.label for e in policies.select(entries, None, ablations=False)]
    assert default == [e.label for e in entries if not e.cut]
    assert {'llm-paper-no-history', 'llm-explicit-no-directions'} <= set(default)  # the policy list
    assert len(policies.select(entries, None, ablations=True)) == len(entries)
    with pytest.raises(SystemExit, match='unknown'):
        policies.select(entries, ['nope'], False)
    endpoint = policies.llm_options('http://127.0.0.1:8000/v1', 'm')
    assert endpoint['base_url'] and 'backend' not in endpoint and endpoint['per_image'] is False


def test_grid_keys_and_statistics():
    grid = oracle_grid(W, [0.1, 10.0])
    assert len(grid) == 9 and W in grid and {'L1': 1.0, 'SSIM': 5.0, 'GAN': 0.001} in grid
    assert all(g['L1'] == 1.0 for g in grid)
    names = list(W)
    assert weights_key({'L1': 1.0, 'SSIM': 0.5000000001, 'GAN': 0.01}, names) == weights_key(W, names)
    low, high = wilson(5, 10)
    assert low < 0.5 < high and abs((low + high) / 2 - 0.5) < 1e-12
    assert oracle_fraction([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]) == '+0.50 (no interval)'
    assert oracle_fraction([1.0, 1.1, 0.9], [2.0, 2.1, 1.9]).startswith('+0.50 [')
    assert oracle_fraction([1.0, 1.0], [0.0, 0.0]) == 'n/a'


def test_the_embedded_model_sits_a_few_reading_decisions():
    pytest.importorskip('llama_cpp')
    from decision_exam.sitting import read_cases, summarise

    entry = next(e for e in policies.exam_entries(policies.llm_options(threads=1)) if e.label == 'llm-paper')
    cases = reading.cases()[:3]
    out = summarise([read_cases((entry, cases))])
    r, raw = out['result'], out['raw']
    assert r['score']['n'] == 3 and r['compliance'] == 1.0  # the grammar: every answer parses
    assert len(raw) == 3 and all(set(a['weights']) == {'L1', 'SSIM', 'GAN'} for a in raw)
    assert all(a['compliance']['prompts'] == 1 for a in raw)  # one prompt per boundary
    assert set(out['breakdown']) == {'noise', 'n_losses', 'shape', 'better'}


def test_quick_exam_end_to_end(tmp_path):
    """Both parts at their smallest: a real 50-iteration demo run (cached), keep and random, P = 2."""
    out = tmp_path / 'exam.md'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1'}
    done = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'exam.py'), '--quick', '--out', str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = out.read_text()
    assert '## Part 1: the reading test' in page and '## Part 2: counterfactual decisions' in page
    assert '| keep | 4 | 0 % [0 %, 49 %] | 100 % |' in page  # keeping never moves the weight
    keep = next(line for line in page.splitlines() if line.startswith('| keep | 1 |')).split(' | ')
    assert keep[2] == '0 %' and keep[4] == '+0.000'  # the current weights against themselves: exactly 0
    assert '**one-step oracle**' in page and '| 1:5:0.1 |' in page


def test_the_demo_policy_retraces_its_run_from_the_saved_history():
    """The set-up's check: adaptive-paired with the run's seed, fed the run's history, proposes exactly what
    the run's own policy chose (the quick exam's cached 50-iteration state; made here if missing)."""
    from decision_exam import states

    runs = states.state_runs([0], 50, prefix='exam_quick')
    states.make_states(runs, jobs=1)
    point = states.points(runs, [50])[0]
    history = states.history_at(point)
    assert history.last.weights_after is None and history.last.iteration == 50
    entry = next(e for e in policies.exam_entries(policies.llm_options()) if e.label == 'adaptive-paired')
    sitter = policies.Sitter(entry, list(W), list(W.values()), history.last.experts, 0, 'x')
    answer = sitter.propose(history)
    assert answer['fallback'] is None and answer['weights'] != history.last.weights
    assert answer['weights'] == states.run_decision(point)
