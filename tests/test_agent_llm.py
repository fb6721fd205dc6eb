"""The llm policy against a real HTTP server on 127.0.0.1 (tests/openai_stub_server.py)."""

import json
import re
import socket
import time

import pytest

from agent import ExpertInfo, History, StageRecord, build_policy
from lossagent_errors import OptionError
from agent.policies.llm_policy import LLM_DEFAULTS
from agent.llm.structured import weights_gbnf, weights_regex, weights_schema
from openai_stub_server import OpenAIStubServer

N = ['L1', 'Perceptual', 'GAN']
INIT = [1.0, 0.1, 0.01]
GOOD = 'Sure.\nWeights: L1:Perceptual:GAN=0.8:0.2:0.05\nThoughts: more perceptual.'


def history(n_images=10, stages=2):
    """Image i's stage-0 score is 4.i so a responder can tell the images apart."""
    h = History([StageRecord(0, 0, dict(zip(N, INIT)), {'NIQE': [4.0 + i / 10 for i in range(n_images)]})])
    for k in range(1, stages):
        h.append(StageRecord(k, 100 * k, dict(zip(N, INIT)), {'NIQE': [3.0 + i / 10 for i in range(n_images)]}))
    return h


def image_of(body):
    text = body['messages'][-1]['content'] if len(body['messages']) < 3 else body['messages'][1]['content']
    return int(re.search(r'before training is 4\.?(\d?)', text).group(1) or 0)


def policy(base_url, run_seed=0, **opts):
    # the client's mechanics, with the answers taken as they are: the safety defaults (median, the
    # trust region) are tested in test_llm_safety.py
    opt = {'type': 'llm', 'base_url': base_url, 'backoff_s': 0.01, 'timeout_s': 5, 'aggregate': 'mean'}
    opt.update({'max_change': None, **opts})
    return build_policy(opt, N, INIT, [ExpertInfo('NIQE', lower_better=True)], seed=run_seed)


def test_prompts_sent_concurrently_and_aggregated():
    with OpenAIStubServer(lambda body, i: GOOD, delay=0.5) as srv:
        p = policy(srv.base_url)
        start = time.monotonic()
        d = p.decide(history())
        took = time.monotonic() - start
    assert d.fallback is None and d.weights == {'L1': 0.8, 'Perceptual': 0.2, 'GAN': 0.05}
    assert srv.max_in_flight == 10 and len(srv.requests) == 10
    assert took < 2.5, took  # one after another would take 5 s
    assert d.info['ok'] == 10 and len(d.prompts) == len(d.answers) == 10
    assert d.answers[0]['text'] == GOOD and d.prompts[0]['messages'][0]['role'] == 'system'
    assert sorted(image_of(b) for b in srv.requests) == list(range(10))
    json.dumps(d.to_dict())


def test_mean_prompt_when_per_image_false_and_median():
    answers = iter(
        [
            'Weights: L1:Perceptual:GAN=1:0.1:0.01',
            'Weights: L1:Perceptual:GAN=1:0.2:0.02',
            'Weights: L1:Perceptual:GAN=9:0.9:0.09',
        ]
    )
    with OpenAIStubServer(lambda body, i: GOOD) as srv:
        d = policy(srv.base_url, per_image=False).decide(history())
        assert len(srv.requests) == 1 and '(mean of 10 images)' in srv.requests[0]['messages'][1]['content']
        assert d.weights == {'L1': 0.8, 'Perceptual': 0.2, 'GAN': 0.05}
    with OpenAIStubServer(lambda body, i: next(answers)) as srv:
        d = policy(srv.base_url, aggregate='median', max_concurrency=1).decide(history(n_images=3))
    assert d.weights == {'L1': 1.0, 'Perceptual': 0.2, 'GAN': 0.02}


@pytest.mark.parametrize('mode', ['none', 'regex', 'json', 'response_format', 'grammar'])
def test_request_bodies_as_vllm_expects(mode):
    def answer(body, i):
        if mode in ('json', 'response_format'):
            return json.dumps({'weights': {'L1': 0.8, 'Perceptual': 0.2, 'GAN': 0.05}, 'thoughts': 't'})
        return GOOD

    with OpenAIStubServer(answer) as srv:
        d = policy(
            srv.base_url,
            structured_output=mode,
            model='meta-llama/Meta-Llama-3-8B-Instruct',
            stop=['<|eot_id|>'],
            temperature=0.3,
            max_tokens=300,
            seed=7,
        ).decide(history(n_images=2))
        body = srv.requests[0]
    assert d.fallback is None and d.weights['GAN'] == 0.05
    assert body['model'] == 'meta-llama/Meta-Llama-3-8B-Instruct'
    assert body['stop_token_ids'] == [128009] and body['stop'] == ['<|eot_id|>']
    assert body['temperature'] == 0.3 and body['max_tokens'] == 300 and isinstance(body['seed'], int)
    assert 'guided_regex' not in body and 'guided_json' not in body
    cap = LLM_DEFAULTS['max_thoughts']  # the Thoughts are capped in every mode
    if mode == 'regex':
        assert body['structured_outputs'] == {'regex': weights_regex(N, max_thoughts=cap)}
        assert re.fullmatch(
            body['structured_outputs']['regex'], 'Weights: L1:Perceptual:GAN=0.7:0.3:0.05\nThoughts: because'
        )
    elif mode == 'json':
        assert body['structured_outputs'] == {'json': weights_schema(N, max_thoughts=cap)}
        assert body['structured_outputs']['json']['properties']['thoughts']['maxLength'] == cap
        assert 'response_format' not in body
    elif mode == 'grammar':  # llama.cpp servers read `grammar`, vLLM `structured_outputs.grammar`
        assert body['grammar'] == body['structured_outputs']['grammar'] == weights_gbnf(N, max_thoughts=cap)
        first_rule = f'root ::= "Weights: L1:Perceptual:GAN=" values "\\nThoughts: " [^\\n]{{1,{cap}}}\n'
        assert body['grammar'].startswith(first_rule)
    elif mode == 'response_format':
        assert body['response_format'] == {
            'type': 'json_schema',
            'json_schema': {'name': 'loss_weights', 'schema': weights_schema(N, max_thoughts=cap), 'strict': True},
        }
        assert 'structured_outputs' not in body
    else:
        assert 'structured_outputs' not in body and 'response_format' not in body


def test_retries_500_then_success_and_no_retry_on_400():
    with OpenAIStubServer(lambda body, i: (500, '{"error": "busy"}') if i < 2 else GOOD) as srv:
        d = policy(srv.base_url, per_image=False, retries=2).decide(history())
        assert len(srv.requests) == 3 and d.fallback is None
    with OpenAIStubServer(lambda body, i: (400, '{"error": "bad model"}')) as srv:
        d = policy(srv.base_url, per_image=False, retries=3).decide(history())
        assert len(srv.requests) == 1
    assert d.fallback and 'HTTP 400' in d.fallback and d.weights == dict(zip(N, INIT))


def test_timeout_falls_back_to_last_weights():
    h = history()
    h.append(StageRecord(2, 200, {'L1': 0.9, 'Perceptual': 0.15, 'GAN': 0.02}, {'NIQE': [3.0] * 10}))
    with OpenAIStubServer(lambda body, i: GOOD, delay=1.5) as srv:
        start = time.monotonic()
        d = policy(srv.base_url, per_image=False, timeout_s=0.2, retries=1).decide(h)
        assert time.monotonic() - start < 1.2
    assert d.weights == {'L1': 0.9, 'Perceptual': 0.15, 'GAN': 0.02}
    assert 'timeout' in d.fallback and d.answers[0]['error'].startswith('timeout')


def test_budget_abandons_stragglers():
    with OpenAIStubServer(lambda body, i: GOOD if image_of(body) < 5 else GOOD, delay=0) as srv:
        srv.delay = 0
        slow = srv.responder

        def responder(body, i):  # images 5..9 answer after 3 s, past the 1 s budget
            if image_of(body) >= 5:
                time.sleep(3)
            return slow(body, i)

        srv.responder = responder
        start = time.monotonic()
        d = policy(srv.base_url, budget_s=1.0, timeout_s=10, min_valid=0.5).decide(history())
        took = time.monotonic() - start
    assert took < 1.6, took
    assert d.fallback is None and d.info['ok'] == 5 and d.info['abandoned'] == 5
    assert d.weights == {'L1': 0.8, 'Perceptual': 0.2, 'GAN': 0.05}


def test_partial_failures_aggregate_the_rest_and_min_valid():
    def responder(body, i):
        k = image_of(body)
        if k < 3:
            return (503, 'down')
        if k < 5:
            return 'I am not sure what to do.'
        return f'Weights: L1:Perceptual:GAN=1:{k / 10}:0.01'

    with OpenAIStubServer(responder) as srv:
        d = policy(srv.base_url, retries=1).decide(history())
        assert d.fallback is None
        assert d.weights == {'L1': 1.0, 'Perceptual': 0.7, 'GAN': 0.01}  # mean of 0.5..0.9
        assert (d.info['ok'], d.info['failed'], d.info['reprompted']) == (5, 5, 2)
        assert d.info['per_image'][:5] == [None] * 5 and 'HTTP 503' in d.info['errors'][0]
        d = policy(srv.base_url, retries=0, min_valid=6).decide(history())
    assert d.fallback.startswith('5 of 10 answers usable, need 6')


def closed_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_server_down_never_raises():
    start = time.monotonic()
    d = policy(f'http://127.0.0.1:{closed_port()}/v1', retries=2).decide(history())
    assert time.monotonic() - start < 3
    assert d.weights == dict(zip(N, INIT)) and 'cannot connect' in d.fallback
    json.dumps(d.to_dict())


@pytest.mark.parametrize(
    'body',
    [b'garbage{{', b'', b'[1, 2]', b'{"choices": []}', b'{"foo": 1}', b'{"choices": [{"message": {"content": 5}}]}'],
)
def test_garbage_bodies(body):
    with OpenAIStubServer(lambda b, i: body) as srv:
        d = policy(srv.base_url, retries=1, per_image=False).decide(history())
        assert len(srv.requests) == 2
    assert d.fallback and 'bad response' in d.fallback and d.weights == dict(zip(N, INIT))


def test_reprompt_once_with_the_error():
    def responder(body, i):
        if len(body['messages']) == 2:
            return 'Weights: L1:Perceptual:GAN=0.7:0.3'
        return GOOD

    with OpenAIStubServer(responder) as srv:
        d = policy(srv.base_url).decide(history(n_images=4))
        again = [b for b in srv.requests if len(b['messages']) == 4]
    assert d.fallback is None and d.info['reprompted'] == 4 and d.info['recovered'] == 4
    assert len(again) == 4
    assert again[0]['messages'][2] == {'role': 'assistant', 'content': 'Weights: L1:Perceptual:GAN=0.7:0.3'}
    assert '3 names but 2 values' in again[0]['messages'][3]['content']
    assert [a['attempt'] for a in d.answers if a['image'] == 0] == [0, 1]
    with OpenAIStubServer(lambda body, i: 'no idea') as srv:
        d = policy(srv.base_url).decide(history(n_images=3))
        assert len(srv.requests) == 6  # exactly one re-prompt per image
    assert d.fallback.startswith('0 of 3 answers usable') and 'rejected' in d.fallback
    with OpenAIStubServer(lambda body, i: 'no idea') as srv:
        policy(srv.base_url, reprompt=False).decide(history(n_images=3))
        assert len(srv.requests) == 3


def test_api_key_never_recorded(monkeypatch):
    secret = 'sk-test-SECRET-4242'
    monkeypatch.setenv('LOSSAGENT_TEST_KEY', secret)
    with OpenAIStubServer(lambda body, i: GOOD) as srv:
        p = policy(srv.base_url, api_key_env='LOSSAGENT_TEST_KEY')
        d = p.decide(history(n_images=2))
        headers = {k.lower(): v for k, v in srv.headers_seen[0].items()}
        assert headers['authorization'] == f'Bearer {secret}'  # it is used ...
    with OpenAIStubServer(lambda body, i: (500, 'x')) as srv:
        d2 = policy(srv.base_url, api_key_env='LOSSAGENT_TEST_KEY', retries=0).decide(history(n_images=2))
    for blob in (d.to_dict(), d2.to_dict(), p.state_dict(), p.opt, p.o):  # ... and never recorded
        assert secret not in json.dumps(blob, default=str)
    with pytest.raises(OptionError, match='agent.policy.api_key: do not put keys in YAML'):
        policy('http://127.0.0.1:1/v1', api_key=secret)


def test_anchor_rescales_answers():
    with OpenAIStubServer(lambda body, i: 'Weights: L1:Perceptual:GAN=2:0.5:0.1') as srv:
        d = policy(srv.base_url, anchor=True).decide(history(n_images=2))
        assert 'Keep the weight of L1 at 1.0 as the anchor' in srv.requests[0]['messages'][1]['content']
    assert d.weights == {'L1': 1.0, 'Perceptual': 0.25, 'GAN': 0.05}


def test_seeds_reproducible_and_state_json_safe():
    with OpenAIStubServer(lambda body, i: GOOD) as srv:
        a, b = policy(srv.base_url, run_seed=3), policy(srv.base_url, run_seed=3)
        a.decide(history(n_images=2))
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
        b.decide(history(n_images=2))
        seeds = [r['seed'] for r in srv.requests]
        assert sorted(seeds[:2]) == sorted(seeds[2:]) and seeds[0] != seeds[1]
        policy(srv.base_url, seed=None).decide(history(n_images=1))
        assert 'seed' not in srv.requests[-1]


def test_configuration_errors(monkeypatch):
    monkeypatch.delenv('LOSSAGENT_LLM_URL', raising=False)
    with pytest.raises(OptionError, match=r'agent\.policy\.base_url: .*LOSSAGENT_LLM_URL'):
        build_policy({'type': 'llm'}, N, INIT, [ExpertInfo('NIQE', True)])
    monkeypatch.setenv('LOSSAGENT_LLM_URL', 'http://127.0.0.1:9/v1')
    p = build_policy({'type': 'llm'}, N, INIT, [ExpertInfo('NIQE', True)])
    assert p.client.base_url == 'http://127.0.0.1:9/v1'
    for opts, key in [
        (
            {'structured_output': 'gramar'},
            r"structured_output: got 'gramar'; allowed values "
            r"are \['none', 'regex', 'json', 'response_format', 'grammar'\]",
        ),
        ({'aggregate': 'max'}, 'aggregate'),
        ({'min_valid': 0}, 'min_valid'),
        ({'min_valid': 1.5}, 'min_valid'),
        ({'bounds': [1, 0]}, 'bounds'),
        ({'budget_s': -1}, 'budget_s'),
        ({'timout_s': 3}, 'timout_s: unknown option'),
        ({'history': 'all'}, 'history'),
        ({'per_image': 'yes'}, 'per_image'),
        ({'backend': 'torch'}, 'backend'),
    ]:
        with pytest.raises(ValueError, match='agent.policy.' + key):
            build_policy({'type': 'llm', **opts}, N, INIT, [ExpertInfo('NIQE', True)])


def test_llamacpp_missing_model_is_one_clear_error(tmp_path):
    with pytest.raises(OptionError) as e:
        build_policy(
            {'type': 'llm', 'backend': 'llamacpp', 'model_path': str(tmp_path / 'm.gguf')},
            N,
            INIT,
            [ExpertInfo('NIQE', True)],
        )
    assert str(e.value).startswith(
        'agent.policy.backend: llamacpp needs agent.policy.model_path must name an existing GGUF file'
    )


def test_boundary_latency_10_images_1s_server(capsys):
    """The number the lead asked for: a 10-image boundary against a server that takes 1 s per answer."""
    with OpenAIStubServer(delay=1.0) as srv:  # the deterministic Llama-3-style responder
        p = policy(srv.base_url)
        p.decide(history(n_images=1))  # warm up the client (first import, connection pool)
        d = p.decide(history(n_images=10))
    with capsys.disabled():
        print(
            f'\n[llm boundary] 10 images, server 1 s/answer: decide() took {d.latency_s:.2f} s '
            f'(max {srv.max_in_flight} requests in flight)'
        )
    assert d.fallback is None and d.latency_s < 2.0
