"""The policy study's controls (benchmarks/protocol.md): paired with random signs, lookahead with a
fixed step, and lookahead's measured extra training."""

import random

import pytest

from agent import ExpertInfo, History, StageRecord, build_policy
from agent.record import ProbeResult
from lossagent_errors import OptionError

N, INIT = ['L1', 'SSIM', 'GAN'], [1.0, 0.5, 0.01]
EXPERTS = [ExpertInfo('NIQE', True)]
PAIRED = {'type': 'adaptive', 'strategy': 'paired', 'sigma': 0.5, 'max_move': 0.5}


def niqe_scores(rng):
    return {'NIQE': [rng.gauss(8, 0.5) for _ in range(4)]}


def drive_paired(opt, seed=3, stages=41, score_seed=7, policy=None):
    """The policy's decisions on a run whose scores are the same draws whatever it decides."""
    rng = random.Random(score_seed)
    policy = policy or build_policy(opt, N, INIT, EXPERTS, seed=seed)
    w = dict(zip(N, INIT))
    records, decisions = [StageRecord(0, 0, dict(w), niqe_scores(rng))], []
    for k in range(1, stages):
        records.append(StageRecord(k, 50 * k, dict(w), niqe_scores(rng)))
        decision = policy.decide(History(list(records)))
        w = decision.weights
        decisions.append(decision)
    return policy, decisions


def test_random_signs_probe_the_data_arms_directions_and_move_as_far_with_coin_signs():
    _, data = drive_paired(PAIRED)
    _, coin = drive_paired({**PAIRED, 'signs': 'random'})
    assert [d.info.get('direction') for d in data] == [d.info.get('direction') for d in coin]
    measured = [(d, c) for d, c in zip(data, coin) if c.info.get('outcome') == 'pair measured']
    assert len(measured) == 19  # stage 1 starts; stages 3, 5, ..., 39 end a pair
    # the same move size as the data would give on the control's own measurements
    assert all(abs(c.info['move']) == pytest.approx(abs(c.info['data_move'])) for _, c in measured)
    signs = [c.info['move'] > 0 for _, c in measured if c.info['move'] != 0]
    assert 0 < sum(signs) < len(signs)  # both signs occur
    agree = [(c.info['move'] > 0) == (c.info['data_move'] > 0) for _, c in measured if c.info['move'] != 0]
    assert not all(agree)  # the coin, not the data, sets the sign
    assert 'data_move' not in measured[0][0].info  # the default arm is unchanged


def test_random_signs_are_seeded_and_resume_from_the_state():
    opt = {**PAIRED, 'signs': 'random'}
    _, whole = drive_paired(opt, stages=21)
    first, _ = drive_paired(opt, stages=11)
    resumed = build_policy(opt, N, INIT, EXPERTS, seed=3)
    resumed.load_state_dict(first.state_dict())
    # rebuild the same run: the first 10 stages from the first policy, the rest from the resumed one
    rng = random.Random(7)
    w, records, moves = dict(zip(N, INIT)), [], []
    records.append(StageRecord(0, 0, dict(w), niqe_scores(rng)))
    for k in range(1, 21):
        records.append(StageRecord(k, 50 * k, dict(w), niqe_scores(rng)))
        w = whole[k - 1].weights if k <= 10 else resumed.decide(History(list(records))).weights
        moves.append(w)
    assert moves == [d.weights for d in whole]
    _, other_seed = drive_paired(opt, seed=4, stages=21)
    assert [d.weights for d in other_seed] != [d.weights for d in whole]


def test_random_signs_need_the_paired_strategy():
    with pytest.raises(OptionError, match='agent.policy.signs'):
        build_policy({'type': 'adaptive', 'signs': 'random'}, N, INIT, EXPERTS)
    with pytest.raises(OptionError, match='agent.policy.signs'):
        build_policy({**PAIRED, 'signs': 'sometimes'}, N, INIT, EXPERTS)


def drive_lookahead(opt, rounds=12, seed=0):
    rng = random.Random(11)
    policy = build_policy({'type': 'lookahead', **opt}, N, INIT, EXPERTS, seed=seed)
    w = dict(zip(N, INIT))
    records, decisions = [StageRecord(0, 0, dict(w), niqe_scores(rng))], []
    for k in range(1, rounds + 1):
        records.append(StageRecord(k, 50 * k, dict(w), niqe_scores(rng)))
        history = History(list(records))
        candidates, info = policy.propose(history)
        decision = policy.choose(history, [ProbeResult(c, niqe_scores(rng)) for c in candidates], info)
        w = decision.weights
        decisions.append(decision)
    return policy, decisions


def test_lookahead_with_sigma_adapt_false_keeps_its_step():
    adapted, decisions = drive_lookahead({'sigma': 0.5})
    assert {d.info['sigma_after'] for d in decisions} != {0.5}  # the 1/5th rule moves it
    fixed, decisions = drive_lookahead({'sigma': 0.5, 'sigma_adapt': False})
    assert {d.info['sigma_after'] for d in decisions} == {0.5} and {d.info['sigma'] for d in decisions} == {0.5}
    assert fixed.wins > 0  # challengers did win: the step stayed anyway
    with pytest.raises(OptionError, match='agent.policy.sigma_adapt'):
        build_policy({'type': 'lookahead', 'sigma_adapt': 'no'}, N, INIT, EXPERTS)


def test_lookahead_records_the_iterations_spent_on_discarded_candidates():
    policy, decisions = drive_lookahead({'candidates': 3, 'probe_iters': 10}, rounds=5)
    assert [d.info['discarded_iters'] for d in decisions] == [20] * 5
    assert [d.info['discarded_iters_total'] for d in decisions] == [20, 40, 60, 80, 100]
    resumed = build_policy({'type': 'lookahead', 'candidates': 3, 'probe_iters': 10}, N, INIT, EXPERTS)
    resumed.load_state_dict(policy.state_dict())
    assert resumed.discarded_iters == 100
    # a candidate that went non-finite still trained its P iterations
    history = History(
        [
            StageRecord(0, 0, dict(zip(N, INIT)), {'NIQE': [8.0]}),
            StageRecord(1, 50, dict(zip(N, INIT)), {'NIQE': [8.0]}),
        ]
    )
    fresh = build_policy({'type': 'lookahead', 'candidates': 4, 'probe_iters': 5}, N, INIT, EXPERTS)
    candidates, info = fresh.propose(history)
    probes = [ProbeResult(c, {'NIQE': [8.0 - i]}, valid=i != 2) for i, c in enumerate(candidates)]
    assert fresh.choose(history, probes, info).info['discarded_iters'] == 15
