"""Text experts (a vision model's critique), human feedback files, expert directions."""

import base64
import threading
import time

import pytest

from lossagent_errors import OptionError
from agent.record import ExpertInfo
from agent.llm.critique import Critic, critique_images
from agent.experts import experts_from_opt
from agent.human_feedback import wait_for_feedback
from openai_stub_server import OpenAIStubServer

PNG = b'\x89PNG\r\n\x1a\nfake-image-%d'


def test_critique_images_concurrent_with_data_urls_and_failures():
    def responder(body, i):
        url = body['messages'][0]['content'][1]['image_url']['url']
        data = base64.b64decode(url.split(',', 1)[1])
        if data.endswith(b'3'):
            return (500, 'broken')
        return f'Sharp, slight ringing ({data[-1:].decode()}).'

    with OpenAIStubServer(responder, delay=0.3) as srv:
        start = time.monotonic()
        out = critique_images(
            [PNG % i for i in range(6)] + [b''], {'base_url': srv.base_url, 'retries': 1, 'backoff_s': 0.01}
        )
        took = time.monotonic() - start
        body = srv.requests[0]
    assert out[:3] == ['Sharp, slight ringing (0).', 'Sharp, slight ringing (1).', 'Sharp, slight ringing (2).']
    assert out[3] is None and out[6] is None and out[5] == 'Sharp, slight ringing (5).'
    assert took < 3 and srv.max_in_flight >= 5  # (took includes importing openai)
    parts = body['messages'][0]['content']
    assert parts[0]['type'] == 'text' and 'image quality' in parts[0]['text']
    assert parts[1]['image_url']['url'].startswith('data:image/png;base64,')
    assert body['model'] == 'Qwen/Qwen2.5-VL-7B-Instruct' and 'stop_token_ids' not in body


def test_critique_server_down_and_options():
    c = Critic({'base_url': 'http://127.0.0.1:9/v1', 'retries': 0, 'prompt': 'Describe.'})
    assert c.critique([PNG % 1]) == [None] and c.prompt == 'Describe.'
    with pytest.raises(OptionError, match=r'agent\.critique\.modle: unknown option'):
        Critic({'modle': 'x'})


def test_wait_for_feedback(tmp_path):
    stage, fixed = tmp_path / 'stage_3' / 'feedback.txt', tmp_path / 'feedback.txt'
    start = time.monotonic()
    assert wait_for_feedback([stage, fixed], timeout_s=0) is None  # unattended: just look once
    assert wait_for_feedback([stage, fixed], timeout_s=0.2, poll_s=0.05) is None
    assert time.monotonic() - start < 1
    fixed.write_text('   \n')
    assert wait_for_feedback([stage, fixed]) is None  # empty files are not feedback
    fixed.write_text('Too many GAN artifacts on faces.\n')
    assert wait_for_feedback([stage, fixed]) == 'Too many GAN artifacts on faces.'
    stage.parent.mkdir()
    threading.Timer(0.2, lambda: stage.write_text('Textures look good now.')).start()
    assert wait_for_feedback([stage], timeout_s=3, poll_s=0.05) == 'Textures look good now.'
    assert wait_for_feedback([tmp_path], timeout_s=0) is None  # a folder is not a file


def test_expert_directions_from_yaml():
    e = experts_from_opt(
        {
            'NIQE': {'metric': 'niqe'},
            'Q': {'metric': 'qalign'},
            'Mine': {'lower_better': True},
            'Critic': {'kind': 'text'},
        }
    )
    assert e == [
        ExpertInfo('NIQE', True),
        ExpertInfo('Q', False),
        ExpertInfo('Mine', True),
        ExpertInfo('Critic', False, 'text'),
    ]
    with pytest.raises(OptionError, match=r'agent\.experts: give at least one expert'):  # one grammar: a mapping
        experts_from_opt([{'name': 'psnr'}])
    with pytest.raises(OptionError, match=r'agent\.experts\.X\.lower_better: unknown metric'):
        experts_from_opt({'X': {'metric': 'mystery'}})
