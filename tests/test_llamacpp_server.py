"""The `openai` backend against a real OpenAI-compatible server: `python -m llama_cpp.server` on
127.0.0.1 serving the tiny Llama-3 model, and the managed server (`agent.policy.serve`) that starts
it from train.py.

What the server does with each structured-output mode is checked first, raw (so the support table
in agent/llm/structured.py is a measurement, and this fails when llama-cpp-python changes); then that
the policy either works in a mode or refuses it once, in one line, at start-up or first contact.
"""

import re
import signal
import subprocess
import sys
import time

import openai
import pytest

from agent import ExpertInfo, History, StageRecord, build_policy
from agent.policies import check_policy
from agent.llm.serve import ManagedServer, check_serve_options, free_port, server_command, server_env
from agent.llm.structured import request_fields, weights_regex
from lossagent_errors import OptionError
from training import ROOT, tiny_options

N, INIT = ['L1', 'Perceptual', 'GAN'], [1.0, 0.1, 0.01]
EXPERTS = [ExpertInfo('NIQE', lower_better=True)]
LINE = re.compile(r'Weights: L1:Perceptual:GAN=[0-9.]+:[0-9.]+:[0-9.]+\nThoughts: ')


def history(images=3):
    return History(
        [
            StageRecord(0, 0, dict(zip(N, INIT)), {'NIQE': [4.0 + i / 10 for i in range(images)]}),
            StageRecord(1, 100, dict(zip(N, INIT)), {'NIQE': [3.0 + i / 10 for i in range(images)]}),
        ]
    )


def serve_options(model, port=0):
    return check_serve_options({'engine': 'llama_cpp', 'model': str(model), 'port': port}, {'backend': 'openai'})


def start_server(model, port=0) -> ManagedServer:
    return ManagedServer(serve_options(model, port), 'tiny', n_ctx=4096).start()


def policy(base_url, **opts):
    opt = {'type': 'llm', 'base_url': base_url, 'max_tokens': 40, 'timeout_s': 60, 'retries': 0, **opts}
    return build_policy(opt, N, INIT, EXPERTS, seed=0)


@pytest.fixture(scope='module')
def server(tiny_gguf):
    srv = start_server(tiny_gguf)
    yield srv
    srv.stop()


def test_what_the_server_does_with_each_request_field(server):
    """Measured facts behind agent/llm/structured.py's SERVERS table."""
    client = openai.OpenAI(base_url=server.base_url, api_key='EMPTY', max_retries=0)
    assert [m.owned_by for m in client.models.list().data] == ['me']
    ask = dict(model='tiny', messages=[{'role': 'user', 'content': 'Give the weights.'}], max_tokens=40, seed=1)
    with pytest.raises(openai.InternalServerError) as err:  # response_format json_schema: HTTP 500
        client.chat.completions.create(**ask, **request_fields('response_format', N))
    assert err.value.status_code == 500 and 'json_schema' in str(err.value)
    for mode in ('regex', 'json'):  # vLLM's structured_outputs: silently ignored, free text comes back
        text = client.chat.completions.create(**ask, **request_fields(mode, N)).choices[0].message.content
        assert not re.fullmatch(weights_regex(N), text) and not text.startswith('{"weights"')
    text = client.chat.completions.create(**ask, **request_fields('grammar', N)).choices[0].message.content
    assert LINE.match(text), text  # the GBNF in the body is enforced


def test_every_structured_output_mode_works_or_is_refused_at_start_up(server):
    url = server.base_url
    decision = policy(url, structured_output='grammar').decide(history())
    assert decision.fallback is None and decision.info['compliance']['first_valid'] == 3
    assert all(LINE.match(a['text']) for a in decision.answers)
    decision = policy(url, structured_output='none').decide(history())  # a random model's free text
    assert re.match(r'0 of 3 answers usable, need 2; e\.g\. rejected: ', decision.fallback), decision.fallback
    assert decision.info['compliance']['reprompted'] == 3
    for mode, why in [
        ('regex', "it ignores vLLM's structured_outputs field"),
        ('json', "it ignores vLLM's structured_outputs field"),
        ('response_format', 'it answers response_format json_schema with HTTP 500'),
    ]:
        with pytest.raises(OptionError) as err:
            policy(url, structured_output=mode)
        assert str(err.value) == (
            f'agent.policy.structured_output: {mode!r} does not work with the '
            f'llama-cpp-python server (python -m llama_cpp.server) at {url} ({why}); '
            'this server supports structured_output: none or grammar'
        )


def test_first_contact_concurrency_and_a_restart(tiny_gguf, capsys):
    """The server is down when the run starts, comes up, goes away and comes back."""
    port = free_port('127.0.0.1')
    url = f'http://127.0.0.1:{port}/v1'
    refused, working = (
        policy(url, structured_output='regex'),
        policy(url, structured_output='grammar', max_concurrency=16),
    )
    srv = start_server(tiny_gguf, port)
    try:
        for _ in range(2):  # refused at first contact, and every boundary after: nothing is sent
            decision = refused.decide(history())
            assert (
                decision.fallback.startswith(
                    "agent.policy.structured_output: 'regex' does not work with the llama-cpp-python server"
                )
                and not decision.prompts
            )
        assert 'POST /v1/chat/completions' not in srv.log_path.read_text()
        decision = working.decide(history(images=4))  # 4 prompts at once; this server answers one at a time
        assert decision.fallback is None and decision.info['compliance']['valid'] == 4
        assert srv.log_path.read_text().count('POST /v1/chat/completions') == 4  # (so the log shows requests)
        latency = decision.latency_s
    finally:
        srv.stop()
    decision = working.decide(history())
    assert decision.fallback.startswith('0 of 3 answers usable') and 'cannot connect' in decision.fallback
    srv = start_server(tiny_gguf, port)
    try:
        decision = working.decide(history())
        assert decision.fallback is None and decision.info['compliance']['first_valid'] == 3
    finally:
        srv.stop()
        refused.close()
        working.close()
    with capsys.disabled():
        print(f'\n[llama_cpp.server] 4 concurrent grammar prompts (<= 40 tokens each) answered in {latency:.2f} s')


def test_vllm_command_and_serve_options(tmp_path, monkeypatch):
    program = tmp_path / 'vllm'
    program.write_text('#!/bin/sh\n')
    program.chmod(0o755)
    s = check_serve_options(
        {
            'engine': 'vllm',
            'executable': str(program),
            'gpu': 1,
            'port': 8123,
            'args': ['--gpu-memory-utilization', 0.85],
        },
        {'model': 'meta-llama/Meta-Llama-3-8B-Instruct'},
    )
    assert server_command(s, 8123, 'llama3', 8192) == [
        str(program),
        'serve',
        'meta-llama/Meta-Llama-3-8B-Instruct',
        '--host',
        '127.0.0.1',
        '--port',
        '8123',
        '--served-model-name',
        'llama3',
        '--max-model-len',
        '8192',
        '--gpu-memory-utilization',
        '0.85',
    ]
    assert server_env(s)['CUDA_VISIBLE_DEVICES'] == '1'
    s = serve_options(program, 9000)
    assert server_command(s, 9000, 'm', 4096)[:4] == [sys.executable, '-m', 'llama_cpp.server', '--model']
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))
    for opt, policy_opt, message in [
        (
            {'engine': 'vllm'},
            {},
            r"agent\.policy\.serve\.executable: 'vllm' is not an executable program; "
            r'install vLLM in its own environment',
        ),
        ({'model': 'x'}, {}, r'agent\.policy\.serve\.engine: missing'),
        ({'engine': 'llama_cpp', 'modle': 'x'}, {}, r'agent\.policy\.serve\.modle: unknown option'),
        (
            {'engine': 'llama_cpp', 'model': str(tmp_path / 'no.gguf')},
            {},
            r'serve\.model: the llama_cpp engine '
            r'needs an existing GGUF file',
        ),
        (
            {'engine': 'llama_cpp', 'model': str(program)},
            {'base_url': 'http://x/v1'},
            r'agent\.policy\.base_url: give either base_url .* or serve',
        ),
        ({'engine': 'llama_cpp', 'model': str(program)}, {'backend': 'llamacpp'}, r'leave agent\.policy\.backend'),
    ]:
        with pytest.raises(OptionError, match=message):
            check_serve_options(opt, {'backend': 'openai', **policy_opt})
    with pytest.raises(
        OptionError,
        match=r"'regex' does not work with the llama-cpp-python server .* at the "
        r'managed server',
    ):  # at the option check, before anything starts
        check_policy(
            {'type': 'llm', 'structured_output': 'regex', 'serve': {'engine': 'llama_cpp', 'model': str(program)}},
            N,
            INIT,
            EXPERTS,
        )


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that is gone counts as ended)."""
    try:
        with open(f'/proc/{pid}/status') as f:
            return not any(line.startswith('State:') and 'Z' in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def served_pid(text: str) -> int:
    return int(re.search(r'started the llama_cpp server \(pid (\d+)\) at http://127\.0\.0\.1:\d+/v1', text).group(1))


def test_one_train_py_command_runs_the_server_too(make_run, tiny_gguf):
    opt = tiny_options(
        'managed_server',
        policy={
            'type': 'llm',
            'serve': {'engine': 'llama_cpp', 'model': str(tiny_gguf)},
            'structured_output': 'grammar',
            'max_tokens': 32,
            'n_ctx': 4096,
        },
    )
    run = make_run(opt)
    proc = run.train()
    decided = [r for r in run.records() if r['policy'] == 'llm']
    assert len(decided) == 3 and all(
        r['fallback'] is None and r['weights_after'] != r['weights_before'] for r in decided
    )
    pid = served_pid(proc.stderr + proc.stdout)
    assert not alive(pid)  # stopped with the run


def test_a_killed_run_takes_its_server_with_it(make_run, tiny_gguf, tmp_path):
    opt = tiny_options(
        'managed_server_kill',
        stage_iters=3,
        total_iter=3000,
        policy={
            'type': 'llm',
            'serve': {'engine': 'llama_cpp', 'model': str(tiny_gguf)},
            'structured_output': 'grammar',
            'max_tokens': 32,
            'n_ctx': 4096,
        },
    )
    run = make_run(opt)
    log = tmp_path / 'train.err'
    with open(log, 'w') as err:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / 'train.py'), '-opt', str(run.yml)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        while 'started the llama_cpp server' not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        pid = served_pid(log.read_text())
        assert alive(pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), f'the llama_cpp server (pid {pid}) outlived the killed run'
