"""A text expert: a vision-language model on an OpenAI-compatible server describes each image.

The glue passes the validation outputs as PNG bytes; each goes in its own request as a
`data:image/png;base64,...` image_url part, all sent concurrently like the LLM prompts,
with the same timeout/retry handling. A failed image gives None (shown to the loss agent
as "(no feedback)"), never an exception.

    agent:
      experts:
        Critic:                       # an expert of type critique (lossagent_hook/experts.py)
          type: critique
          base_url: http://127.0.0.1:8001/v1   # the rest of the mapping: CRITIQUE_DEFAULTS below
          model: Qwen/Qwen2.5-VL-7B-Instruct
"""

from __future__ import annotations

import base64
from pathlib import Path
from string import Template

from lossagent_errors import OptionError
from .client import CLIENT_DEFAULTS, build_client, check_client_options
from .concurrency import run_concurrently
from ..options import number, read_options
from .prompts import TEMPLATES, article

CRITIQUE_DEFAULTS = {
    **CLIENT_DEFAULTS,
    'model': 'Qwen/Qwen2.5-VL-7B-Instruct',
    'temperature': 0.2,
    'max_tokens': 200,
    'stop_token_ids': [],  # 128009 is Llama-3's; other models have their own
    'prompt': None,  # the question; default agent/llm/templates/critique.txt
    'templates_dir': None,  # a folder with an edited critique.txt
    'model_noun': 'super-resolution model',
    'max_concurrency': 16,
    'budget_s': 300.0,
}


def check_critique_options(opt: dict | None, prefix: str = 'agent.critique') -> dict:
    """The validated options of one critic (nothing is connected or built)."""
    o = read_options(opt, CRITIQUE_DEFAULTS, prefix)
    check_client_options(o, prefix)
    if o['backend'] != 'openai':
        raise OptionError(f"{prefix}.backend: only 'openai' (an OpenAI-compatible server) serves images here")
    o['max_concurrency'] = number(o, 'max_concurrency', 1, 1024, integer=True, prefix=prefix)
    o['budget_s'] = number(o, 'budget_s', 0.01, 10**6, prefix=prefix)
    return o


class Critic:
    """Reusable: holds one HTTP client for the run."""

    def __init__(self, opt: dict | None = None, prefix: str = 'agent.critique'):
        o = check_critique_options(opt, prefix)
        self.o = o
        self.prompt = o['prompt'] or self._template(o, prefix)
        self.client = build_client(o, {}, prefix)

    @staticmethod
    def _template(o: dict, prefix: str) -> str:
        path = Path(o['templates_dir']) / 'critique.txt' if o['templates_dir'] else None
        if path is None or not path.is_file():
            path = TEMPLATES / 'critique.txt'
        text = path.read_text(encoding='utf-8').strip()
        return Template(text).safe_substitute(a_model=article(o['model_noun']), model=o['model_noun'])

    def messages(self, png: bytes) -> list[dict]:
        url = 'data:image/png;base64,' + base64.b64encode(png).decode('ascii')
        return [
            {
                'role': 'user',
                'content': [{'type': 'text', 'text': self.prompt}, {'type': 'image_url', 'image_url': {'url': url}}],
            }
        ]

    def critique(self, png_images: list[bytes]) -> list[str | None]:
        def job(i: int, deadline: float) -> str | None:
            png = png_images[i]
            if not isinstance(png, (bytes, bytearray)) or not png:
                return None
            reply = self.client.chat(self.messages(bytes(png)), deadline=deadline)
            text = (reply.text or '').strip()
            return text or None

        results, done = run_concurrently(job, len(png_images), self.o['max_concurrency'], self.o['budget_s'])
        return [r if ok and isinstance(r, str) else None for r, ok in zip(results, done)]

    def close(self) -> None:
        self.client.close()


def critique_images(png_images: list[bytes], opt: dict | None = None) -> list[str | None]:
    """One critique (or None) per PNG image, in order. `opt`: a critique expert's options
    (its `agent.experts.<name>` mapping without `type`)."""
    critic = Critic(opt)
    try:
        return critic.critique(list(png_images))
    finally:
        critic.close()
