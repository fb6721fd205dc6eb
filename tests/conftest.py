"""Offline, CPU-only test environment, set before anything imports pyiqa or the HF hub."""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('TORCH_HOME', str(Path(tempfile.gettempdir()) / 'lossagent-test-torch-home'))
os.environ.setdefault('OMP_NUM_THREADS', '2')
os.environ['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)
for path in (str(ROOT), str(ROOT / 'tests')):
    if path not in sys.path:
        sys.path.insert(0, path)

import pytest  # noqa: E402


@pytest.fixture
def make_run(tmp_path):
    """`make_run(options) -> Run`: an experiment of train.py, removed after the test."""
    from training import Run

    runs = []

    def factory(opt):
        run = Run(tmp_path, opt)
        runs.append(run)
        return run

    yield factory
    for run in runs:
        run.cleanup()


@pytest.fixture(scope='session')
def tiny_gguf(tmp_path_factory):
    """A 41 MB Llama-3-shaped GGUF with the real tokenizer and random weights (tests/tiny_llama.py)."""
    from tiny_llama import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp('gguf') / 'tiny-llama3.gguf')
