"""Structured output: request fields that make vLLM produce a parseable answer.

vLLM (>= 0.12) reads `structured_outputs` from the request body (`extra_body` in the
openai client) and the standard `response_format`; the old `guided_*` fields are silently
ignored, so answers are always parsed and validated anyway (`agent.parser`).

    none            free text, the paper's setting (rules + format example in the prompt)
    regex           'Weights: L1:Perceptual:GAN=<num>:<num>:<num>\\nThoughts: ...'
    json            {"weights": {"L1": <num>, ...}, "thoughts": "..."} via structured_outputs
    response_format the same JSON schema via OpenAI's response_format=json_schema
"""
from __future__ import annotations

import re

MODES = ('none', 'regex', 'json', 'response_format')
# up to 3 integer digits and 6 decimals: enough for any sane weight, bounded for the grammar
NUM_REGEX = r'(0|[1-9][0-9]{0,2})(\.[0-9]{1,6})?'


def weights_regex(loss_names: list[str]) -> str:
    names = ':'.join(re.escape(n) for n in loss_names)
    values = ':'.join(NUM_REGEX for _ in loss_names)
    return f'Weights: {names}={values}\\nThoughts: [^\\n]+'


def weights_schema(loss_names: list[str], bounds: tuple[float, float] = (0.0, 100.0)) -> dict:
    number = {'type': 'number', 'minimum': bounds[0], 'maximum': bounds[1]}
    return {
        'type': 'object',
        'properties': {
            'weights': {'type': 'object', 'properties': {n: dict(number) for n in loss_names},
                        'required': list(loss_names), 'additionalProperties': False},
            'thoughts': {'type': 'string'},
        },
        'required': ['weights', 'thoughts'],
        'additionalProperties': False,
    }


def request_fields(mode: str, loss_names: list[str], bounds: tuple[float, float] = (0.0, 100.0)) -> dict:
    """Keyword arguments for `client.chat.completions.create` (merged into extra_body there)."""
    if mode == 'regex':
        return {'extra_body': {'structured_outputs': {'regex': weights_regex(loss_names)}}}
    if mode == 'json':
        return {'extra_body': {'structured_outputs': {'json': weights_schema(loss_names, bounds)}}}
    if mode == 'response_format':
        return {'response_format': {'type': 'json_schema', 'json_schema': {
            'name': 'loss_weights', 'schema': weights_schema(loss_names, bounds), 'strict': True}}}
    return {}
