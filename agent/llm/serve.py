"""A managed inference server: `agent.policy.serve` starts the engine as a child of rank 0.

    agent:
      policy:
        type: llm
        serve: {engine: llama_cpp, model: models/Meta-Llama-3-8B-Instruct.Q4_K_M.gguf}
        # or   {engine: vllm, model: meta-llama/Meta-Llama-3-8B-Instruct, gpu: 1,
        #       executable: /opt/vllm-env/bin/vllm}

The llm policy starts the server when it is built (rank 0 only; the option check only checks),
waits until `/v1/models` answers, points its client at it and stops it when the run ends. The
child gets SIGTERM from the kernel if the training process dies in any way (PR_SET_PDEATHSIG),
and an exit handler stops it when Python exits on an exception, so no server outlives its run.

vLLM runs as its own program because it pins its own torch (and CUDA) build: install it in a
separate environment and name that environment's `vllm` with `executable`. The llama.cpp
server is `python -m llama_cpp.server` of llama-cpp-python (`pip install 'llama-cpp-python[server]'`),
run by this Python unless `executable` names another.
"""

from __future__ import annotations

import contextlib
import atexit
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from pathlib import Path

from lossagent_errors import OptionError
from ..options import choice, number, read_options

SERVE_DEFAULTS = {
    'engine': None,  # llama_cpp | vllm
    'model': None,  # llama_cpp: a GGUF file; vllm: a model name or folder (default: agent.policy.model)
    'host': '127.0.0.1',
    'port': 0,  # 0: a free port
    'gpu': None,  # vllm: CUDA_VISIBLE_DEVICES of the server, e.g. 1 or '2,3'
    'executable': None,  # vllm: its `vllm` program (default: on PATH); llama_cpp: a python (default: this one)
    'args': [],  # more command-line arguments for the engine
    'startup_timeout_s': 900.0,  # loading an 8B model from a slow disk takes minutes
    'log_file': None,  # the server's output (default: a file in the temp folder, named in the log)
}
ENGINES = ('llama_cpp', 'vllm')
OWNED_BY = {'llama_cpp': 'me', 'vllm': 'vllm'}  # what each engine's /v1/models says (agent/llm/structured.py)
SERVER_PACKAGES = ('llama_cpp', 'uvicorn', 'fastapi', 'sse_starlette', 'starlette_context', 'pydantic_settings')
PR_SET_PDEATHSIG = 1


def check_serve_options(opt, policy: dict, prefix: str = 'agent.policy.serve') -> dict | None:
    """The validated `serve` mapping (None: no managed server); nothing is started."""
    if opt is None:
        return None
    if not isinstance(opt, dict):
        raise OptionError(f'{prefix}: expected a mapping such as {{engine: llama_cpp, model: model.gguf}}, got {opt!r}')
    s = read_options(opt, SERVE_DEFAULTS, prefix)
    if s['engine'] is None:
        raise OptionError(f'{prefix}.engine: missing; choose one of {list(ENGINES)}')
    s['engine'] = choice(s, 'engine', ENGINES, prefix)
    s['port'] = number(s, 'port', 0, 65535, integer=True, prefix=prefix)
    s['startup_timeout_s'] = number(s, 'startup_timeout_s', 1, 86400, prefix=prefix)
    if isinstance(s['args'], str):
        s['args'] = s['args'].split()
    if not isinstance(s['args'], list) or not all(isinstance(a, (str, int, float)) for a in s['args']):
        raise OptionError(f'{prefix}.args: got {s["args"]!r}; expected a list of command-line arguments')
    s['args'] = [str(a) for a in s['args']]
    if policy.get('backend', 'openai') != 'openai':
        raise OptionError(
            f'{prefix}: a managed server is spoken to over HTTP; leave agent.policy.backend at '
            f"'openai' (got {policy.get('backend')!r})"
        )
    if policy.get('base_url'):
        raise OptionError(
            'agent.policy.base_url: give either base_url (a server you run) or serve (one the run starts), not both'
        )
    if s['engine'] == 'llama_cpp':
        if not s['model'] or not Path(str(s['model'])).is_file():
            raise OptionError(f'{prefix}.model: the llama_cpp engine needs an existing GGUF file, got {s["model"]!r}')
        if s['executable'] is None:
            missing = [m for m in SERVER_PACKAGES if importlib.util.find_spec(m) is None]
            if missing:
                raise OptionError(
                    f"{prefix}.engine: llama_cpp needs llama-cpp-python's server (missing "
                    f"{', '.join(missing)}): pip install 'llama-cpp-python[server]'"
                )
    else:
        s['model'] = str(s['model'] or policy.get('model'))
        program = s['executable'] or 'vllm'
        if shutil.which(program) is None:
            raise OptionError(
                f'{prefix}.executable: {program!r} is not an executable program; install vLLM in its '
                'own environment (it pins its own torch) and name its `vllm` here'
            )
    if s['executable'] is not None and shutil.which(str(s['executable'])) is None:
        raise OptionError(f'{prefix}.executable: {s["executable"]!r} is not an executable program')
    return s


def server_command(s: dict, port: int, served_name: str, n_ctx: int, n_gpu_layers: int = 0) -> list[str]:
    """The engine's command line: the model answers to `served_name` on s['host']:port."""
    if s['engine'] == 'vllm':
        return [
            s['executable'] or 'vllm',
            'serve',
            str(s['model']),
            '--host',
            s['host'],
            '--port',
            str(port),
            '--served-model-name',
            served_name,
            '--max-model-len',
            str(n_ctx),
        ] + s['args']
    return [
        s['executable'] or sys.executable,
        '-m',
        'llama_cpp.server',
        '--model',
        str(s['model']),
        '--host',
        s['host'],
        '--port',
        str(port),
        '--model_alias',
        served_name,
        '--n_ctx',
        str(n_ctx),
        '--n_gpu_layers',
        str(n_gpu_layers),
    ] + s['args']


def server_env(s: dict) -> dict:
    env = dict(os.environ)
    if s['gpu'] is not None:
        env['CUDA_VISIBLE_DEVICES'] = str(s['gpu'])
    return env


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the exit handler still stops it
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedServer:
    """One engine process; `start()` returns when it answers, `stop()` is safe to call twice."""

    def __init__(self, s: dict, served_name: str, n_ctx: int, n_gpu_layers: int = 0):
        self.s = s
        self.port = s['port'] or free_port(s['host'])
        self.base_url = f'http://{s["host"]}:{self.port}/v1'
        self.command = server_command(s, self.port, served_name, n_ctx, n_gpu_layers)
        self.log_path = Path(
            s['log_file'] or Path(tempfile.gettempdir()) / f'lossagent-{s["engine"]}-{os.getpid()}-{self.port}.log'
        )
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> ManagedServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_env(self.s),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + self.s['startup_timeout_s']
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise OptionError(
                    f'agent.policy.serve: the {self.s["engine"]} server exited with code {code} '
                    f'before answering: {self.last_line()} (all of it in {self.log_path})'
                )
            if self.answers():
                return self
            time.sleep(0.25)
        self.stop()
        raise OptionError(
            f'agent.policy.serve: the {self.s["engine"]} server did not answer {self.base_url}/models '
            f'within startup_timeout_s={self.s["startup_timeout_s"]:g}s (its output: {self.log_path})'
        )

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f'{self.base_url}/models', timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def last_line(self) -> str:
        try:
            with open(self.log_path, encoding='utf-8', errors='replace') as f:
                lines = deque((line.strip() for line in f if line.strip()), maxlen=1)
            return lines[0][:300] if lines else '(no output)'
        except OSError:
            return '(no output)'

    def stop(self, grace_s: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            try:  # the whole process group: vLLM runs its engine in child processes
                os.killpg(process.pid, signal.SIGTERM)
            except OSError:
                process.terminate()
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except OSError:
                    process.kill()
                process.wait(5)
