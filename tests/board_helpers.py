"""Shared by the board tests: a run folder written the way a run writes it, a board process, a browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.decision_log import DecisionLog
from agent.record import ExpertInfo, StageRecord
from agent.stage_files import image_file, stage_dir, write_json

ROOT = Path(__file__).resolve().parents[1]
NAMES = ['set/chelsea_00', 'set/chelsea_01']
SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def png(path: Path, value: int, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((size, size, 3), value, np.uint8)
    image[::4] = 255 - value
    cv2.imwrite(str(path), image)


def record(stage: int, l1: float, ssim: float, after_ssim: float, niqe: list, thoughts=None) -> StageRecord:
    r = StageRecord(
        stage,
        stage * 3,
        {'L1': l1, 'SSIM': ssim},
        {'NIQE': niqe, 'Human': ['blurry', None]},
        experts=[ExpertInfo('NIQE', True), ExpertInfo('Human', False, 'text')],
        images=list(NAMES),
        policy='llm' if stage else 'initial',
        eval_s=0.5,
    )
    if stage:
        r.prompts = [{'image': 0, 'attempt': 0, 'messages': [{'role': 'user', 'content': f'prompt {SCRIPT}'}]}]
        r.answers = [
            {'image': 0, 'attempt': 0, 'text': f'Weights: L1:SSIM=1:{after_ssim}\nThoughts: {SCRIPT}', 'error': None}
        ]
        r.info = {'thoughts': thoughts or [SCRIPT, None], 'per_image': [{'L1': 1.0, 'SSIM': after_ssim}, None]}
        r.latency_s, r.decided_by = 1.5, 'policy'
    r.weights_after, r.applied_iteration = {'L1': l1, 'SSIM': after_ssim}, stage * 3 + 1
    return r


def write_run(root: Path, stages: int = 2) -> Path:
    """experiments/<name> as a run writes it: validation images, stage images, the decision log."""
    agent = root / 'agent'
    images = []
    for i, name in enumerate(NAMES):
        file = image_file(i, name)
        png(agent / 'validation' / f'lq_{file}', 60 + i, 16)
        png(agent / 'validation' / f'gt_{file}', 90 + i)
        images.append({'name': name, 'file': file, 'lq': f'validation/lq_{file}', 'gt': f'validation/gt_{file}'})
    write_json(agent / 'validation' / 'images.json', {'images': images})
    log = DecisionLog(agent / 'decisions.jsonl')
    for k in range(stages):
        for i, name in enumerate(NAMES):
            png(stage_dir(agent, k) / image_file(i, name), 100 + 20 * k + i)
        log.append(record(k, 1.0, 0.5, 0.25 if k else 0.5, [5.0 - k, 6.0 - k]))
    (root / 'train.yml').write_text('secret: not an image\n')
    return root


class Board:
    """`python -m agent.runs.board` in its own process, on a free port of 127.0.0.1."""

    def __init__(self, *runs, token=None):
        cmd = [sys.executable, '-m', 'agent.runs.board', *map(str, runs), '--port', '0', '--poll-s', '0.2']
        if token is not None:
            cmd += ['--token', token]
        env = {k: v for k, v in os.environ.items() if k != 'LOSSAGENT_BOARD_TOKEN'}
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        line = self.process.stdout.readline()
        match = re.search(r'http://127\.0\.0\.1:(\d+)/', line)
        if not match:
            self.stop()
            raise AssertionError(f'the board did not start: {line}{self.process.stdout.read()}')
        self.port = int(match.group(1))
        self.url = f'http://127.0.0.1:{self.port}'
        self.first_line = line

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def wait_for_url(url: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'


def chromium():
    """Headless Debian Chromium through selenium (no driver or browser is downloaded). Skipped where
    it is not installed, except in CI (`.ci/run` installs it), where its absence is a failure."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append('selenium')
    if missing:
        if os.environ.get('CI'):
            pytest.fail(f'browser tests need {missing} (.ci/run installs them)')
        pytest.skip(f'browser tests need {missing}: apt-get install chromium chromium-driver; pip install selenium')
    os.environ['SE_OFFLINE'] = 'true'  # selenium never looks for a driver online
    profile = tempfile.mkdtemp(prefix='lossagent-chromium-')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        f'--user-data-dir={profile}',
        '--window-size=1400,1600',
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.profile_dir = profile
    return driver


def close_chromium(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)
