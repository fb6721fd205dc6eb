"""Headless Chromium against the board of a run that train.py is producing (the llm policy through the
local OpenAI-compatible server): images and scores on the page, a new stage appearing live, feedback
typed in the page reaching the llm's next prompt, an edited weight applied from the next iteration,
and an LLM answer carrying `<script>` shown as text.

Set LOSSAGENT_BOARD_SCREENSHOT=docs/board.png to keep the screenshot taken while the proposal waits.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

from board_helpers import SCRIPT, chromium, close_chromium, wait_for_url
from openai_stub_server import OpenAIStubServer
from training import ROOT, tiny_options

TOKEN = 'browser-test-token'
FEEDBACK_0 = 'Stage zero looks blocky.'
FEEDBACK_1 = 'Too much ringing on the fur; keep the whiskers sharp.'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def answer(body, index):
    return f'Weights: L1:SSIM=1:0.9\nThoughts: more SSIM for structure. {SCRIPT}'


def test_board_over_a_live_run(make_run, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    port = free_port()
    # the board redraws a run's stages when the run changes on disk, so a found element can go stale
    wait = WebDriverWait(driver, 90, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))

    redrawn = WebDriverWait(driver, 5, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    css = lambda selector: driver.find_elements(By.CSS_SELECTOR, selector)  # noqa: E731

    def on_first(selector, use):
        """`use(element)` on the first match of `selector`, found again if the page redrew it meanwhile."""
        return redrawn.until(lambda d: (use(css(selector)[0]),))[0]

    text = lambda e: e.text  # noqa: E731
    click = lambda e: e.click()  # noqa: E731
    train = log = None
    with OpenAIStubServer(answer) as llm:
        experts = {
            'NIQE': {'metric': 'niqe'},
            'PSNR': {'metric': 'psnr', 'test_y_channel': True, 'crop_border': 2},
            'Human': {'type': 'human', 'timeout_s': 120, 'poll_s': 0.1},
        }
        opt = tiny_options(
            'board_live',
            stage_iters=3,
            total_iter=5,
            experts=experts,
            policy={'type': 'llm', 'base_url': llm.base_url, 'model': 'stub'},
        )
        opt['agent'].update(human_approval=True, approval_timeout_s=120, board={'port': port})
        run = make_run(opt)
        try:
            log = open(tmp_path / 'train.out', 'w')  # noqa: SIM115 -- closed after train ends, below
            train = subprocess.Popen(
                [sys.executable, str(ROOT / 'train.py'), '-opt', str(run.yml)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, 'LOSSAGENT_BOARD_TOKEN': TOKEN},
            )
            url = f'http://127.0.0.1:{port}'
            wait_for_url(f'{url}/api/runs', timeout=90)
            driver.get(f'{url}/?token={TOKEN}')
            # taken from the address bar while the head is parsed, kept for this tab only. Both the page's
            # own URL and chromedriver's are waited for: on a loaded machine each has still shown the token
            # right after get() returned (a CI run, then a run here beside a fresh-clone test suite)
            WebDriverWait(driver, 10, poll_frequency=0.1).until(
                lambda d: 'token' not in d.execute_script('return document.URL') and 'token' not in d.current_url
            )
            assert driver.execute_script("return sessionStorage.getItem('lossagent-board-token')") == TOKEN
            driver.execute_script('window.__notReloaded = true')

            # stage 0: the restorations are on the page while the human expert waits for a person
            wait.until(lambda d: css('.stage .feedback-box[data-stage="0"]'))
            wait.until(
                lambda d: d.execute_script(
                    'const imgs = [...document.querySelectorAll(\'.stage[data-stage="0"] img\')];'
                    'return imgs.length === 9 && imgs.every((i) => i.complete && i.naturalWidth > 0);'
                )
            )  # LQ, GT, output
            assert on_first('.countdown', text).endswith(' s')
            # stay on stage 0: following the newest stage, the page would move on to stage 1 as soon as
            # it starts, before the test has read stage 0's scores
            on_first('input.follow', click)
            on_first('.stage .feedback-box[data-stage="0"] textarea', lambda e: e.send_keys(FEEDBACK_0))
            on_first('.send-feedback', click)

            # stage 0 recorded (scores on the page), then stage 1 appears without reloading
            wait.until(lambda d: css('.stage[data-stage="0"] .score-mean[data-expert="NIQE"]'))
            niqe_0 = on_first('.stage[data-stage="0"] .score-mean[data-expert="NIQE"]', text)
            wait.until(lambda d: [b.text for b in css('.stage-button')] == ['0', '1'])
            assert driver.execute_script('return window.__notReloaded') is True
            on_first('input.follow', click)
            wait.until(lambda d: css('.stage .feedback-box[data-stage="1"]'))
            on_first('.stage .feedback-box[data-stage="1"] textarea', lambda e: e.send_keys(FEEDBACK_1))
            on_first('.stage[data-stage="1"] input.rate[data-image="0"][value="5"]', click)
            on_first('.stage .feedback-box[data-stage="1"] .send-feedback', click)

            # the proposal waits for approval: the LLM's words are on the page as text, no script ran
            wait.until(lambda d: css('.approval-box[data-stage="1"] input.weight[data-loss="SSIM"]'))
            wait.until(lambda d: css('.stage[data-stage="1"] .thoughts li'))
            thoughts = on_first('.stage[data-stage="1"] .thoughts li', text)  # as the parser kept them
            assert '<script' in thoughts and 'onerror=' in thoughts
            on_first('.stage[data-stage="1"] details.llm summary', click)
            wait.until(lambda d: css('.stage[data-stage="1"] pre.answer'))
            assert SCRIPT in on_first('.stage[data-stage="1"] pre.answer', text)
            assert driver.execute_script(
                'return window.__pwned === undefined && !document.querySelector(".stage img[src=\'x\']")'
            )
            driver.save_screenshot(str(tmp_path / 'board.png'))
            if os.environ.get('LOSSAGENT_BOARD_SCREENSHOT'):
                shutil.copy(tmp_path / 'board.png', os.environ['LOSSAGENT_BOARD_SCREENSHOT'])
            on_first('.approval-box input.weight[data-loss="SSIM"]', lambda e: (e.clear(), e.send_keys('0.125')))
            on_first('.apply-edit', click)
            wait.until(lambda d: css('.stage[data-stage="1"] .human-line'))
            assert train.wait(timeout=120) == 0
        finally:
            if train is not None and train.poll() is None:
                train.kill()
            if log is not None:
                log.close()
            close_chromium(driver)
        requests = [json.dumps(body['messages']) for body in llm.requests]
    output = (tmp_path / 'train.out').read_text()
    assert train.returncode == 0, output[-3000:]

    records = run.records()
    assert [r['stage'] for r in records] == [0, 1]
    assert abs(float(niqe_0) - records[0]['mean_scores']['NIQE']) <= 1e-3 * abs(records[0]['mean_scores']['NIQE'])
    assert records[0]['scores']['Human'] == [FEEDBACK_0] * 3
    assert records[1]['scores']['Human'][0] == f'{FEEDBACK_1} Rating of this image: 5 of 5 (5 is best).'
    # what the person typed reached the llm's prompts (one per image; image 0's with its rating)
    assert len(requests) == 3 and all(FEEDBACK_1 in r and FEEDBACK_0 in r for r in requests)
    assert sum('Rating of this image: 5 of 5' in r for r in requests) == 1  # image 0's only
    stage_1 = records[1]
    assert stage_1['decided_by'] == 'human' and stage_1['proposed_weights'] == {'L1': 1.0, 'SSIM': 0.9}
    assert stage_1['weights_after'] == {'L1': 1.0, 'SSIM': 0.125} and stage_1['applied_iteration'] == 4
    applied = [json.loads(line) for line in (run.root / 'agent' / 'applied_rank0.jsonl').read_text().splitlines()]
    assert applied[-1] == {'stage': 1, 'from_iteration': 4, 'weights': {'L1': 1.0, 'SSIM': 0.125}}
    logged = dict(re.findall(r'iter:\s+(\d+),.*?w_SSIM: ([0-9.e+-]+)', output))
    assert float(logged['3']) == 0.5 and float(logged['4']) == float(logged['5']) == 0.125  # from the next iteration
    assert f'Run board: http://127.0.0.1:{port}/ (feedback and approvals with the token' in output
    assert TOKEN not in ''.join(p.read_text() for p in run.root.glob('*.log'))  # the token is never logged
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the board went away with the run
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            time.sleep(0.2)
        except OSError:
            break
    else:
        raise AssertionError('the board outlived its run')
