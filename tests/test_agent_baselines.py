"""Random and adaptive policies: seeded, and a resume from state_dict continues the same trajectory."""

import json
import math
import random

import pytest

from agent import ExpertInfo, History, StageRecord, build_policy, policy_names
from lossagent_errors import OptionError

N = ['L1', 'Perceptual', 'GAN']
INIT = [1.0, 0.1, 0.01]
EXPERTS = [ExpertInfo('NIQE', lower_better=True), ExpertInfo('CLIPIQA', lower_better=False)]


def fake_scores(weights, stage, rng):
    """A made-up response surface: NIQE falls with the perceptual weight, CLIPIQA rises with GAN."""
    niqe = [5 - 2 * weights['Perceptual'] - 0.1 * stage + rng.gauss(0, 0.05) for _ in range(4)]
    clip = [0.5 + weights['GAN'] + rng.gauss(0, 0.01) for _ in range(3)] + [None]
    return {'NIQE': niqe, 'CLIPIQA': clip}


def run(policy, stages, history=None, rng=None, weights=None):
    """Drive a policy like the training glue does; returns the weights decided at each boundary."""
    rng = rng or random.Random(1)
    history = history or History([StageRecord(0, 0, dict(zip(N, INIT)), fake_scores(dict(zip(N, INIT)), 0, rng))])
    out = []
    weights = weights or dict(zip(N, INIT))
    for k in range(len(history), len(history) + stages):
        history.append(StageRecord(k, 100 * k, weights, fake_scores(weights, k, rng)))
        d = policy.decide(history)
        assert d.fallback is None, d.fallback
        json.dumps(d.to_dict())
        weights = d.weights
        out.append(weights)
    return out, history, rng


@pytest.mark.parametrize(
    'kind, opts',
    [
        ('random', {}),
        ('random', {'log_uniform': True, 'range': [0.1, 10]}),
        ('adaptive', {}),
        ('adaptive', {'normalize': 'relative'}),
        ('adaptive', {'strategy': 'paired'}),
    ],
)
def test_seeded_and_resumable(kind, opts):
    def make(seed=5):
        return build_policy({'type': kind, **opts}, N, INIT, EXPERTS, seed=seed)

    full, _, _ = run(make(), 8)
    assert full == run(make(), 8)[0]  # deterministic given the seed
    assert full != run(make(seed=6), 8)[0]  # and the seed matters
    first = make()
    head, history, rng = run(first, 4)
    state = json.loads(json.dumps(first.state_dict()))  # what the training state stores
    resumed = make()
    resumed.load_state_dict(state)
    tail, _, _ = run(resumed, 4, history=history, rng=rng, weights=head[-1])
    assert head + tail == full
    assert all(w >= 0 for ws in full for w in ws.values())


def test_random_range_and_anchor():
    p = build_policy({'type': 'random', 'range': [0.5, 1.5], 'anchor': True}, N, INIT, EXPERTS, seed=0)
    out, _, _ = run(p, 50)
    assert all(w['L1'] == 1.0 for w in out)
    assert all(0.05 <= w['Perceptual'] <= 0.15 and 0.005 <= w['GAN'] <= 0.015 for w in out)
    assert len({w['GAN'] for w in out}) == 50
    with pytest.raises(OptionError, match=r'agent\.policy\.range'):
        build_policy({'type': 'random', 'range': [2, 1]}, N, INIT, EXPERTS)


def test_adaptive_climbs_a_simple_objective_within_the_trust_region():
    p = build_policy({'type': 'adaptive', 'trust_region': 1.0}, N, INIT, EXPERTS, seed=0)
    out, history, _ = run(p, 30)
    assert all(w['L1'] == 1.0 for w in out)  # anchor on by default
    assert max(w['Perceptual'] for w in out) <= 0.1 * 2.7183 + 1e-6  # e^1 around the initial weight
    assert p.successes > 0 and p.evals == 30
    assert p.best['Perceptual'] > -2.31  # moved up from log(0.1): the objective rewards perceptual


@pytest.mark.parametrize('seed', range(4))
def test_adaptive_paired_climbs_despite_a_training_trend(seed):
    """The fake NIQE also falls by 0.1 per stage whatever the weights: levels would reward any late
    candidate; the paired strategy compares the change of each stage, so it follows Perceptual. (Relative
    changes make NIQE the objective here; on a common scale CLIPIQA's GAN slope would count as much.)"""
    p = build_policy(
        {'type': 'adaptive', 'strategy': 'paired', 'trust_region': 1.0, 'normalize': 'relative'},
        N,
        INIT,
        EXPERTS,
        seed=seed,
    )
    out, history, _ = run(p, 30)
    assert all(w['L1'] == 1.0 for w in out)
    assert max(w['Perceptual'] for w in out) <= 0.1 * 2.7183 + 1e-6
    assert p.evals == 30 and p.successes > 0
    assert p.center['Perceptual'] > -2.31 + 0.5  # the centre moved up from log(0.1)
    # the first two probes are antithetic around the initial weights (the first centre)
    for name, w0 in zip(N[1:], INIT[1:]):
        assert math.isclose(math.log(out[0][name]) + math.log(out[1][name]), 2 * math.log(w0), abs_tol=1e-4)
        assert out[0][name] != out[1][name]


def test_adaptive_paired_restarts_a_pair_after_an_invalid_stage():
    p = build_policy({'type': 'adaptive', 'strategy': 'paired'}, N, INIT, EXPERTS, seed=0)
    h = History(
        [
            StageRecord(0, 0, dict(zip(N, INIT)), {'NIQE': [5.0], 'CLIPIQA': [0.5]}),
            StageRecord(1, 100, dict(zip(N, INIT)), {'NIQE': [4.9], 'CLIPIQA': [0.5]}),
        ]
    )
    d = p.decide(h)
    assert d.fallback is None and p.phase == 1 and d.weights != dict(zip(N, INIT))
    h.append(StageRecord(2, 200, d.weights, {'NIQE': [None], 'CLIPIQA': [float('nan')]}))
    d = p.decide(h)
    assert d.fallback.startswith('no valid expert scores') and p.phase == 0
    h.append(StageRecord(3, 300, d.weights, {'NIQE': [4.8], 'CLIPIQA': [0.5]}))
    d = p.decide(h)  # the previous stage has no objective: no change to score, start a new pair
    assert p.phase == 1
    with pytest.raises(OptionError, match=r'agent\.policy\.strategy'):
        build_policy({'type': 'adaptive', 'strategy': 'cma'}, N, INIT, EXPERTS)


def test_adaptive_handles_invalid_stages_and_bad_options():
    p = build_policy({'type': 'adaptive'}, N, INIT, EXPERTS, seed=0)
    h = History(
        [
            StageRecord(0, 0, dict(zip(N, INIT)), {'NIQE': [5.0], 'CLIPIQA': [0.5]}),
            StageRecord(1, 100, dict(zip(N, INIT)), {'NIQE': [None], 'CLIPIQA': [float('nan')]}),
        ]
    )
    d = p.decide(h)
    assert d.fallback.startswith('no valid expert scores') and d.weights == dict(zip(N, INIT))
    for opts, key in [
        ({'normalize': 'ranks'}, 'normalize'),
        ({'objective_weights': {'NIQE': 1}}, 'objective_weights: unknown option'),
        ({'sigma': 5, 'sigma_max': 1}, 'sigma'),
        ({'patience': 0}, 'patience'),
        ({'step': 1}, 'step: unknown option'),
    ]:
        with pytest.raises(OptionError, match=r'agent\.policy\.' + key):
            build_policy({'type': 'adaptive', **opts}, N, INIT, EXPERTS)


def test_registry_lists_all_policies():
    assert {'fixed', 'random', 'adaptive', 'llm', 'lookahead'} <= set(policy_names())
    with pytest.raises(ValueError, match='agent.policy.type'):
        build_policy({'type': 'gpt'}, N, INIT, EXPERTS)
