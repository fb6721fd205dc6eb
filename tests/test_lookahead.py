"""The lookahead policy: exact state restore, common random numbers, choosing, NaN candidates,
a kill inside a probe window, two processes in lockstep, and the EMA network being scored."""

import json
import math
import sys

import pytest
import torch
from torch.utils.data.dataloader import default_collate

from agent import ExpertInfo, History, StageRecord, build_policy
from agent.record import ProbeResult
from training import tiny_options

N = ['L1', 'SSIM', 'GAN']
INIT = [1.0, 0.5, 0.01]
EXPERTS = [ExpertInfo('NIQE', True), ExpertInfo('PSNR', False)]


def tiny_model(tmp_path, **agent_changes):
    """A LossAgentModel built in-process from the e2e tests' tiny options (no agent section)."""
    import lossagent_compat  # noqa: F401
    import lossagent_arch  # noqa: F401
    import lossagent_data  # noqa: F401
    import lossagent_losses  # noqa: F401
    import lossagent_models  # noqa: F401
    from basicsr.data import build_dataset
    from basicsr.models import build_model

    opt = tiny_options('la_unit', gan=True)
    opt.pop('agent')
    opt['train']['ema_decay'] = 0.5
    opt.update(dist=False, rank=0, world_size=1, is_train=True, auto_resume=False)
    opt['datasets']['train'].update(phase='train', scale=2)
    root = tmp_path / 'experiments' / opt['name']
    opt['path'].update(
        experiments_root=str(root),
        models=str(root / 'models'),
        training_states=str(root / 'training_states'),
        log=str(root),
        visualization=str(root / 'visualization'),
    )
    torch.manual_seed(0)
    model = build_model(opt)
    data = build_dataset(opt['datasets']['train'])
    batches = [default_collate([data[0], data[1]]) for _ in range(6)]  # random crops: other pixels each time
    return model, batches


def params(model):
    nets = [model.net_g, model.net_d, model.net_g_ema]
    return [p.detach().clone() for net in nets for p in net.state_dict().values()]


def test_a_replayed_candidate_retraces_the_live_one_exactly(tmp_path):
    """Restoring the copy and replaying the same weights on the kept inputs gives bit-identical
    networks and optimizer states: the differences between candidates are differences of weights."""
    from lossagent_hook.lookahead_loop import replay, start_probe

    model, batches = tiny_model(tmp_path)
    model.feed_data(batches[0])
    model.train_step(1)
    before = params(model)
    probe = start_probe(model, boundary=1, probe_iters=4, candidates=[{'L1': 1.0, 'SSIM': 0.5, 'GAN': 0.01}] * 2)
    for it, batch in enumerate(batches[1:5], 2):  # the main loop: feed, step (lr moved by hand), keep
        for group in model.optimizer_g.param_groups:
            group['lr'] = 1e-3 / it
        model.feed_data(batch)
        model.train_step(it)
        probe.keep_step(model)
    live, live_state = params(model), model.take_snapshot()
    assert any(not torch.equal(a, b) for a, b in zip(before, live))
    assert replay(model, probe, probe.candidates[1])
    assert all(torch.equal(a, b) for a, b in zip(live, params(model)))
    replayed_state = model.take_snapshot()
    for a, b in zip(live_state['optimizers'], replayed_state['optimizers']):
        for key, state in a['state'].items():
            assert all(torch.equal(state[k], b['state'][key][k]) for k in state if torch.is_tensor(state[k]))
    assert [g['lr'] for g in model.optimizer_g.param_groups] == [1e-3 / 5]
    # other weights from the same copy: a different network, the copy itself untouched
    assert replay(model, probe, {'L1': 1.0, 'SSIM': 0.5, 'GAN': 0.5})
    assert any(not torch.equal(a, b) for a, b in zip(live, params(model)))
    assert replay(model, probe, probe.candidates[0])
    assert all(torch.equal(a, b) for a, b in zip(live, params(model)))


def test_a_candidate_whose_training_goes_non_finite_is_marked(tmp_path):
    from lossagent_hook.lookahead_loop import replay, start_probe

    model, batches = tiny_model(tmp_path)
    probe = start_probe(model, boundary=0, probe_iters=2, candidates=[dict(zip(N, INIT))] * 2)
    for it, batch in enumerate(batches[:2], 1):
        model.feed_data(batch)
        model.train_step(it)
        probe.keep_step(model)
    probe.inputs[1] = {**probe.inputs[1], 'lq': torch.full_like(probe.inputs[1]['lq'], math.nan)}
    assert not replay(model, probe, probe.candidates[1])
    assert all(torch.isfinite(p).all() for p in model.net_g.parameters())  # the update was skipped


def history(stages=1):
    h = History([StageRecord(0, 0, dict(zip(N, INIT)), {'NIQE': [6.0, 7.0], 'PSNR': [30.0, 29.0]}, experts=EXPERTS)])
    for k in range(1, stages + 1):
        h.append(
            StageRecord(k, 10 * k, dict(zip(N, INIT)), {'NIQE': [5.0, 6.0], 'PSNR': [31.0, 30.0]}, experts=EXPERTS)
        )
    return h


def probe(weights, niqe, psnr, valid=True):
    return ProbeResult(weights, {'NIQE': list(niqe), 'PSNR': list(psnr)}, valid=valid)


def test_proposals_are_seeded_antithetic_and_anchored():
    policy = build_policy({'type': 'lookahead', 'candidates': 5}, N, INIT, EXPERTS, seed=3)
    candidates, info = policy.propose(history())
    assert len(candidates) == 5 and candidates[0] == dict(zip(N, INIT)) and info['proposer'] == 'adaptive'
    assert all(c['L1'] == 1.0 for c in candidates)  # the anchor
    for a, b in ((1, 2), (3, 4)):  # antithetic pairs around the current weights (log space)
        for name in ('SSIM', 'GAN'):
            base = math.log(dict(zip(N, INIT))[name])
            assert math.log(candidates[a][name]) - base == pytest.approx(base - math.log(candidates[b][name]), rel=1e-4)
    again = build_policy({'type': 'lookahead', 'candidates': 5}, N, INIT, EXPERTS, seed=3)
    assert again.propose(history())[0] == candidates
    resumed = build_policy({'type': 'lookahead', 'candidates': 5}, N, INIT, EXPERTS, seed=3)
    policy.propose(history())
    resumed.load_state_dict(json.loads(json.dumps(policy.state_dict())))
    assert resumed.propose(history())[0] == policy.propose(history())[0]


def test_choose_takes_the_best_valid_candidate_and_adapts_the_step():
    policy = build_policy({'type': 'lookahead', 'candidates': 3, 'sigma': 0.5}, N, INIT, EXPERTS)
    w = [dict(zip(N, INIT)), {'L1': 1.0, 'SSIM': 0.8, 'GAN': 0.005}, {'L1': 1.0, 'SSIM': 0.3, 'GAN': 0.02}]
    probes = [
        probe(w[0], [5.0, 6.0], [31.0, 30.0]),
        probe(w[1], [4.0, 5.0], [31.5, 30.5]),
        probe(w[2], [1.0, 1.0], [40.0, 40.0], valid=False),
    ]  # the best scores, but its training broke
    decision = policy.choose(history(), probes, {'proposer': 'adaptive'})
    assert decision.fallback is None and decision.weights == w[1] and decision.info['winner'] == 1
    assert decision.info['objectives'][2] is None and decision.info['objectives'][1] > decision.info['objectives'][0]
    assert policy.sigma == pytest.approx(0.75)  # a perturbation won: the 1/5th rule grows the step
    probes = [probe(w[0], [4.0, 5.0], [31.5, 30.5]), probe(w[1], [5.0, 6.0], [31.0, 30.0])]
    decision = policy.choose(history(), probes, {})
    assert decision.info['winner'] == 0 and policy.sigma == pytest.approx(0.75 * 1.5**-0.25)
    broken = [probe(w[0], [None, None], [None, None]), probe(w[1], [4.0, 5.0], [31.0, 30.0], valid=False)]
    decision = policy.choose(history(), broken, {})
    assert decision.fallback == 'no candidate gave finite scores' and decision.weights == w[0]


def test_psnr_counts_in_a_double_objective_on_a_common_scale():
    """zscore: each expert in units of its own stage-to-stage spread, so a consistent PSNR gain is not
    drowned by NIQE's noise (the first study's relative changes let NIQE decide alone)."""
    from agent.objective import stage_objective

    h = History(
        [
            StageRecord(k, 10 * k, dict(zip(N, INIT)), {'NIQE': [n], 'PSNR': [p]}, experts=EXPERTS)
            for k, (n, p) in enumerate([(6.0, 30.0), (7.5, 30.2), (5.0, 30.4), (6.5, 30.6)])
        ]
    )
    ref = h.records[-1]
    psnr_better = StageRecord(9, 90, {}, {'NIQE': [6.6], 'PSNR': [31.0]}, experts=EXPERTS)  # +0.4 dB, NIQE +0.1
    niqe_better = StageRecord(9, 90, {}, {'NIQE': [6.3], 'PSNR': [30.5]}, experts=EXPERTS)  # NIQE -0.2, -0.1 dB
    z = [stage_objective(r, ref, EXPERTS, h)[0] for r in (psnr_better, niqe_better)]
    rel = [stage_objective(r, ref, EXPERTS, h, normalize='relative')[0] for r in (psnr_better, niqe_better)]
    assert z[0] > z[1]  # 0.4 dB is two stage spreads of PSNR; 0.2 NIQE a fifth of NIQE's
    assert rel[0] < rel[1]  # relative change: NIQE's 3 % beats PSNR's 1.3 %
    weighted = [ExpertInfo('NIQE', True, weight=10.0), ExpertInfo('PSNR', False)]
    assert stage_objective(niqe_better, ref, weighted, h)[0] > stage_objective(psnr_better, ref, weighted, h)[0]


def test_bad_lookahead_options_are_one_line(make_run):
    run = make_run(tiny_options('la_bad', policy={'type': 'lookahead', 'probe_iters': 3}, stage_iters=3))
    proc = run.train(check=False, timeout=120)
    assert (
        proc.returncode == 2 and 'agent.policy.probe_iters: 3 must be smaller than agent.stage_iters (3)' in proc.stderr
    )
    run.opt['agent'].update(stage_iters=6, **{'async': True})
    run.yml.write_text(__import__('yaml').safe_dump(run.opt))
    proc = run.train(check=False, timeout=120)
    assert proc.returncode == 2 and 'agent.async: the lookahead policy' in proc.stderr


def test_lookahead_through_train_py_scores_the_ema_and_continues_from_the_winner(make_run):
    opt = tiny_options(
        'la_e2e',
        gan=True,
        stage_iters=4,
        total_iter=12,
        policy={'type': 'lookahead', 'probe_iters': 2, 'candidates': 3},
    )
    opt['train']['ema_decay'] = 0.9
    run = make_run(opt)
    proc = run.train()
    assert (
        '(K-1)*P/stage_iters = 100.0% extra training'
        in proc.stdout + proc.stderr + next(run.root.glob('train_*.log')).read_text()
    )
    records = run.records()
    assert [r['stage'] for r in records] == [0, 1, 2, 3]
    assert {r['scored_network'] for r in records} == {'ema'}
    for r in records[1:3]:
        assert len(r['probes']) == 3 and r['probes'][0]['weights'] == r['weights_before']
        winner = r['info']['winner']
        assert r['weights_after'] == r['probes'][winner]['weights'] and r['applied_iteration'] == r['iteration'] + 1
    applied = [json.loads(line) for line in (run.root / 'agent' / 'applied_rank0.jsonl').read_text().splitlines()]
    assert [a['weights'] for a in applied] == [r['weights_after'] for r in records[1:3]]
    assert records[3]['fallback'] == 'training ends here'
    # the networks users deploy: params_ema is saved beside params
    assert 'params_ema' in torch.load(run.root / 'models' / 'net_g_latest.pth', weights_only=True)


def test_net_g_is_scored_without_ema_and_snapshots_are_averaged(make_run):
    opt = tiny_options('la_snap', stage_iters=4, total_iter=8, policy={'type': 'fixed'})
    opt['agent'].update(snapshots=2, snapshot_every=2)
    run = make_run(opt)
    run.train()
    records = run.records()
    assert {r['scored_network'] for r in records} == {'net_g'}
    assert records[0].get('snapshots') is None and [r['snapshots'] for r in records[1:]] == [[2, 4], [6, 8]]


def test_two_processes_probe_in_lockstep(make_run):
    from test_distributed import free_port

    opt = tiny_options(
        'la_dist',
        gan=True,
        stage_iters=3,
        total_iter=6,
        policy={'type': 'lookahead', 'probe_iters': 1, 'candidates': 2, 'sigma': 1.0},
    )
    run = make_run(opt)
    run.train(
        '--launcher',
        'pytorch',
        timeout=400,
        env={'OMP_NUM_THREADS': '1'},
        launcher=[sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}'],
    )
    records = run.records()
    rank0, rank1 = (run.root / 'agent' / f'applied_rank{r}.jsonl' for r in (0, 1))
    assert rank0.read_text() == rank1.read_text() and rank0.read_text()
    assert json.loads(rank0.read_text().splitlines()[0])['weights'] == records[1]['weights_after']
    final = [torch.load(run.root / 'models' / 'net_g_latest.pth', weights_only=True)['params']]
    assert all(torch.isfinite(v).all() for v in final[0].values())


def test_llm_proposer_asks_for_candidates_and_sees_earlier_probes():
    from openai_stub_server import OpenAIStubServer

    answers = iter(
        ['Weights: L1:SSIM:GAN=1.0:0.6:0.02\nThoughts: a', 'Weights: L1:SSIM:GAN=1.0:0.4:0.005\nThoughts: b'] * 20
    )
    with OpenAIStubServer(lambda body, i: next(answers)) as server:
        policy = build_policy(
            {
                'type': 'lookahead',
                'proposer': 'llm',
                'candidates': 3,
                'llm': {'base_url': server.base_url, 'model': 'stub', 'per_image': False},
            },
            N,
            INIT,
            EXPERTS,
            seed=0,
        )
        h = history()
        candidates, info = policy.propose(h)
        assert candidates[0] == dict(zip(N, INIT)) and len(candidates) == 3 and info['proposer'] == 'llm'
        assert {c['SSIM'] for c in candidates[1:]} == {0.6, 0.4}
        probes = [probe(c, [5.0, 5.5], [31.0, 30.5]) for c in candidates]
        decision = policy.choose(h, probes, info)
        h.last.probes = probes
        h.last.record_decision(decision, N)
        h.last.info['probe_iters'] = 10
        h.append(StageRecord(2, 20, decision.weights, {'NIQE': [4.0, 5.0], 'PSNR': [32.0, 31.0]}, experts=EXPERTS))
        policy.propose(h)
        prompt = server.requests[-1]['messages'][-1]['content']
        policy.close()
    assert 'From step 10, 3 candidate weights were each trained for 10 steps from the same state' in prompt
    assert '1.0:0.6:0.02 gave NIQE 5.25 (mean of 2 images), PSNR 30.75' in prompt


def test_the_llm_proposer_is_checked_without_connecting():
    from agent.policies import check_policy
    from lossagent_errors import OptionError

    check_policy(
        {'type': 'lookahead', 'proposer': 'llm', 'llm': {'base_url': 'http://127.0.0.1:9/v1'}}, N, INIT, EXPERTS
    )  # nothing listens there: only the options are checked
    with pytest.raises(OptionError, match=r'agent\.policy\.temperatur: unknown option'):
        check_policy(
            {'type': 'lookahead', 'proposer': 'llm', 'llm': {'base_url': 'http://x/v1', 'temperatur': 1}},
            N,
            INIT,
            EXPERTS,
        )
    with pytest.raises(OptionError, match=r'agent\.policy\.proposer'):
        check_policy({'type': 'lookahead', 'proposer': 'gpt'}, N, INIT, EXPERTS)
