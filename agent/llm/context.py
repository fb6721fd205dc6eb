"""The prompt against the model's context: an estimate of its tokens, and where a full history stops fitting.

With `history: full` each stage adds a line to every prompt. On Llama-3's tokenizer a 40-stage
prompt (the paper's 200k-iteration RISR run at 5000 per stage) is 1.8k tokens with 3 losses and one
expert and 4.0k with 5 losses and 3 experts (tests/test_llamacpp.py measures it with the real
tokenizer), inside Llama-3-8B's 8192; longer runs and wider prompts get there. Before a prompt would
overflow `n_ctx`, the policy shows the initial stage and only the latest stages that fit (what
`history: last_k` does), and says so in the decision and, projected, at start-up.

The estimate needs no tokenizer (the policy's server may not be up when the run starts): 2.3
characters per token, which over-estimates Llama-3's count of our prompts by 4-30 % at the sizes that
matter (numbers cost a token per 1-3 digits; words ~4 characters).
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 2.3
TOKENS_PER_MESSAGE = 6  # <|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|>
REPROMPT_NOTE = 80  # the re-prompt's note about the parse error


def estimate_tokens(messages: list[dict]) -> int:
    chars = sum(len(str(m.get('content') or '')) for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages) + 1


def answer_room(o: dict) -> int:
    """Tokens kept free after the first prompt: its answer; with `reprompt` also the note and the second
    answer (the first answer is sent back in the re-prompt)."""
    return o['max_tokens'] * (2 if o['reprompt'] else 1) + (REPROMPT_NOTE if o['reprompt'] else 0)


def prompt_budget(o: dict) -> int:
    return o['n_ctx'] - answer_room(o)


def fits(messages: list[dict], o: dict) -> bool:
    return estimate_tokens(messages) <= prompt_budget(o)


def overflow_stage(tokens_at, budget: int, probe: int = 20) -> tuple[int, float, int | None]:
    """(tokens at stage 1, tokens added per stage, the first stage whose prompt exceeds `budget` or None)
    from `tokens_at(stages)`, the estimate of a prompt after that many stages (a line per stage)."""
    first, later = tokens_at(1), tokens_at(1 + probe)
    per_stage = (later - first) / probe
    if first > budget:
        return first, per_stage, 1
    if per_stage <= 0:
        return first, per_stage, None
    return first, per_stage, 1 + math.floor((budget - first) / per_stage) + 1
