"""The llm policy on a real engine in-process: llama.cpp (llama-cpp-python) with the real Llama-3
tokenizer and chat template around a tiny random model (tests/tiny_llama.py).

A random model cannot reason: under a grammar it must still answer in our format (and the weights
are applied), without one it babbles (and the boundary falls back, saying why). The prompt is
checked as the engine sees it: the Llama-3 template's turns and end-of-turn token, and its length
in Llama-3 tokens after a paper-length run.
"""

import logging
import random
import re
import statistics
import subprocess
import sys

import pytest
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter, format_llama3

from agent import ExpertInfo, History, StageRecord, build_policy
from agent.llm.context import estimate_tokens, prompt_budget
from agent.policies.llm_policy import LLM_DEFAULTS
from agent.llm.prompts import PromptBuilder
from tiny_llama import EOT_ID, read_metadata, vocab_path
from training import ROOT, tiny_options

BOS, HEADER_START, HEADER_END = 128000, 128006, 128007


@pytest.fixture(scope='module')
def tokenizer():
    return Llama(model_path=str(vocab_path()), vocab_only=True, verbose=False)


def tokens(tokenizer, prompt: str) -> list[int]:
    return tokenizer.tokenize(prompt.encode(), add_bos=False, special=True)


def run_history(names, experts, stages, images=10, seed=0):
    """A run's records: scores 2..8 per image, weights drifting by up to 30 % per stage."""
    rng = random.Random(seed)
    weights, records = dict(zip(names, [1.0, 0.1, 0.01, 1.0, 0.5][: len(names)])), []
    for k in range(stages + 1):
        records.append(
            StageRecord(
                k, 5000 * k, dict(weights), {e.name: [rng.uniform(2, 8) for _ in range(images)] for e in experts}
            )
        )
        weights = {n: round(v * rng.uniform(0.7, 1.3), 5) for n, v in weights.items()}
    return History(records)


def builder(names, experts, **opts):
    return PromptBuilder(names, {n: 1.0 for n in names}, experts, 'image super-resolution', {**LLM_DEFAULTS, **opts})


def test_the_tiny_model_is_shaped_like_llama3_instruct(tiny_gguf):
    meta = read_metadata(tiny_gguf)
    assert meta['tokenizer.ggml.pre'][1] == 'llama-bpe' and len(meta['tokenizer.ggml.tokens'][1]) == 128256
    assert meta['tokenizer.ggml.eos_token_id'][1] == EOT_ID and meta['tokenizer.ggml.bos_token_id'][1] == BOS
    llm = Llama(model_path=str(tiny_gguf), n_ctx=512, verbose=False)
    assert llm.chat_format == 'llama-3'  # as llama-cpp-python picks for a real Llama-3-8B-Instruct GGUF
    assert llm.tokenize(b'<|eot_id|>', add_bos=False, special=True) == [EOT_ID] and llm.token_eos() == EOT_ID
    llm.close()


def test_the_prompt_as_the_engine_sees_it(tiny_gguf, tokenizer):
    """Our messages through the GGUF's Llama-3 template: one system and one user turn, each closed by
    <|eot_id|>, then the assistant header; the re-prompt adds an assistant and a user turn."""
    names, experts = ['L1', 'Perceptual', 'GAN'], [ExpertInfo('NIQE', lower_better=True)]
    prompts = builder(names, experts)
    messages = prompts.messages(run_history(names, experts, 3), 0)
    template = read_metadata(tiny_gguf)['tokenizer.chat_template'][1]
    rendered = Jinja2ChatFormatter(template, eos_token='<|eot_id|>', bos_token='<|begin_of_text|>')(
        messages=messages
    ).prompt
    assert rendered == '<|begin_of_text|>' + format_llama3(messages).prompt  # the engine's handler, + its BOS
    system, user = messages[0]['content'].strip(), messages[1]['content'].strip()
    assert rendered == (
        '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n' + system + '<|eot_id|>'
        '<|start_header_id|>user<|end_header_id|>\n\n' + user + '<|eot_id|>'
        '<|start_header_id|>assistant<|end_header_id|>\n\n'
    )
    ids = tokens(tokenizer, rendered)
    assert ids[:2] == [BOS, HEADER_START] and ids.count(EOT_ID) == 2 and ids.count(HEADER_START) == 3
    assert tokenizer.detokenize(ids[ids.index(HEADER_START) + 1 : ids.index(HEADER_END)]) == b'system'
    assert ids[-3:] == tokens(tokenizer, '<|start_header_id|>assistant<|end_header_id|>\n\n')[-3:]
    assert 'Weights: L1:Perceptual:GAN=' in user and 'lower NIQE score' in system
    again = prompts.reprompt(messages, 'Weights: L1:Perceptual:GAN=1:2', '3 names but 2 values')
    ids = tokens(tokenizer, Jinja2ChatFormatter(template, '<|eot_id|>', '<|begin_of_text|>')(messages=again).prompt)
    assert ids.count(EOT_ID) == 4 and ids.count(HEADER_START) == 5


def test_prompt_tokens_after_a_paper_length_run(tokenizer, capsys):
    """The paper's RISR run: 200k iterations, a stage every 5000 = 40 boundaries, Llama-3-8B's 8192 tokens."""
    lines, o = [], {**LLM_DEFAULTS, 'reprompt': True}
    for names, experts, image in [
        (['L1', 'Perceptual', 'GAN'], [ExpertInfo('CLIPIQA')], 0),
        (
            ['L1', 'MSE', 'Perceptual', 'GAN', 'LPIPS'],
            [ExpertInfo('NIQE', True), ExpertInfo('MANIQA'), ExpertInfo('CLIPIQA')],
            None,
        ),
    ]:
        for stages in (40, 100):
            messages = builder(names, experts).messages(run_history(names, experts, stages), image)
            real = len(tokens(tokenizer, format_llama3(messages).prompt))
            estimate = estimate_tokens(messages)
            assert real <= estimate <= 1.35 * real, (names, stages, real, estimate)  # never under-estimated
            lines.append(
                f'{len(names)} losses, {len(experts)} experts, {stages} stages: {real} tokens (estimate {estimate})'
            )
            if stages == 40:
                assert real + 2 * o['max_tokens'] < 8192  # the paper's run fits, re-prompt included
    with capsys.disabled():
        print('\n[prompt tokens, Llama-3 tokenizer, history: full] ' + '; '.join(lines))


def test_a_full_history_that_outgrows_n_ctx_shows_the_latest_stages(tiny_gguf, tokenizer, caplog):
    names, experts = ['L1', 'Perceptual', 'GAN'], [ExpertInfo('NIQE', lower_better=True)]
    opt = {
        'type': 'llm',
        'backend': 'llamacpp',
        'model_path': str(tiny_gguf),
        'n_ctx': 1536,
        'max_tokens': 40,
        'structured_output': 'grammar',
        'per_image': False,
    }
    with caplog.at_level(logging.INFO, logger='basicsr'):
        policy = build_policy(opt, names, [1.0, 0.1, 0.01], experts, seed=0)
        decision = policy.decide(run_history(names, experts, 30))
    policy.close()
    assert 'reaches n_ctx=1536 at stage ~' in caplog.text  # the start-up projection
    shown = decision.info['history_shown']
    assert shown['stages'] == 30 and 1 <= shown['shown'] < 30
    assert 'the full history no longer fits agent.policy.n_ctx=1536' in caplog.text
    sent = decision.prompts[0]['messages']
    assert len(tokens(tokenizer, format_llama3(sent).prompt)) <= prompt_budget(policy.o)
    assert sent[1]['content'].count('weights is') == shown['shown']  # one "Step N weights is ..." line each
    assert decision.fallback is None and decision.answers[0]['error'] is None  # llama.cpp took the prompt


def test_json_mode_in_process(tiny_gguf):
    names, experts = ['L1', 'Perceptual', 'GAN'], [ExpertInfo('NIQE', lower_better=True)]
    opt = {
        'type': 'llm',
        'backend': 'llamacpp',
        'model_path': str(tiny_gguf),
        'n_ctx': 2048,
        'max_tokens': 64,
        'structured_output': 'json',
    }
    policy = build_policy(opt, names, [1.0, 0.1, 0.01], experts, seed=0)
    decision = policy.decide(run_history(names, experts, 2, images=2))
    policy.close()
    assert decision.fallback is None
    for answer in decision.answers:
        assert re.match(r'\{"weights": \{"L1": [0-9.]+, "Perceptual": [0-9.]+, "GAN": [0-9.]+\}', answer['text'])
    # an answer cut by max_tokens inside "thoughts" is not JSON; its weights are still read (as pairs)
    assert set(decision.info['compliance']['forms']) <= {'json', 'pairs'}
    assert decision.info['compliance']['first_valid'] == 2


def llamacpp_policy(tiny_gguf, mode):
    return {
        'type': 'llm',
        'backend': 'llamacpp',
        'model_path': str(tiny_gguf),
        'n_ctx': 4096,
        'max_tokens': 32,
        'structured_output': mode,
    }


def summary(run) -> str:
    return subprocess.run(
        [sys.executable, '-m', 'agent.runs.summary', str(run.root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_train_py_with_a_grammar_applies_weights_from_generated_text(make_run, tiny_gguf):
    run = make_run(tiny_options('llamacpp_grammar', policy=llamacpp_policy(tiny_gguf, 'regex')))
    run.train()
    decided = [r for r in run.records() if r['policy'] == 'llm']
    assert len(decided) == 3
    for record in decided:
        assert record['fallback'] is None, record['fallback']
        assert record['weights_after'] != record['weights_before']
        c = record['info']['compliance']
        assert (c['prompts'], c['first_valid'], c['valid'], c['forms']) == (3, 3, 3, {'ratio': 3})
        texts = [a['text'] for a in record['answers']]
        assert all(re.match(r'Weights: L1:SSIM=[0-9.]+:[0-9.]+\nThoughts: ', t) for t in texts), texts
        values = [[float(v) for v in t.split('=')[1].split('\n')[0].split(':')] for t in texts]
        # the defaults: the median of the answers, then each weight within x2 of where it was
        proposed = statistics.median(v[1] for v in values)
        before = record['weights_before']['SSIM']
        assert record['info']['proposed']['SSIM'] == pytest.approx(proposed, rel=1e-5)
        assert record['weights_after']['SSIM'] == pytest.approx(min(max(proposed, before / 2), before * 2), rel=1e-5)
    out = summary(run)
    assert 'structured_output: regex' in out and 'first answers usable       9/9 (100.0 %)' in out


def test_train_py_free_text_from_a_random_model_falls_back(make_run, tiny_gguf):
    run = make_run(tiny_options('llamacpp_none', policy=llamacpp_policy(tiny_gguf, 'none')))
    run.train()
    decided = [r for r in run.records() if r['policy'] == 'llm']
    assert len(decided) == 3
    for record in decided:
        assert record['fallback'].startswith('0 of 3 answers usable, need 2; e.g. rejected: '), record['fallback']
        assert record['weights_after'] == record['weights_before']
        c = record['info']['compliance']
        assert (c['first_valid'], c['reprompted'], c['valid'], c['no_answer']) == (0, 3, 0, 0)
        assert all(a['text'] for a in record['answers']) and len(record['answers']) == 6  # one re-prompt each
    out = summary(run)
    assert 'first answers usable       0/9 (0.0 %)' in out and 're-prompted 9, recovered 0' in out
