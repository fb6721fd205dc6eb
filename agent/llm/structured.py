"""Structured output: what makes an engine produce an answer the parser accepts, by construction.

    none            free text, the paper's setting (rules + format example in the prompt)
    regex           'Weights: L1:Perceptual:GAN=<num>:<num>:<num>\\nThoughts: ...' (vLLM `structured_outputs`)
    json            {"weights": {"L1": <num>, ...}, "thoughts": "..."} (vLLM `structured_outputs`)
    response_format the same JSON schema through OpenAI's `response_format: json_schema`
    grammar         the `Weights:` line as a GBNF grammar: llama.cpp servers read `grammar` from the
                    request body, vLLM reads `structured_outputs.grammar`; both are sent

vLLM (>= 0.12) reads `structured_outputs` from the request body (`extra_body` in the openai
client); its old `guided_*` fields are silently ignored. Which server accepts which mode is
`SERVERS` below (the server is recognised by `owned_by` in its `/v1/models` answer).

The regex and the grammars spell exactly the valid answers: each number is within `bounds` with
at most six decimals, and not every weight is zero, so everything a grammar engine lets through
parses back to the weights it spells (tests/test_grammars.py checks this in xgrammar, llguidance
and llama.cpp). A JSON schema cannot say "not all zero"; the parser rejects that one answer.

`max_thoughts` caps the Thoughts at that many characters in every mode (the JSON schema's
`maxLength`), so a model that loops in free text stops there instead of running to `max_tokens`:
once the grammar is complete only the end of the answer can follow.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

MODES = ('none', 'regex', 'json', 'response_format', 'grammar')
DECIMALS = 6  # digits after the point a grammar lets through: enough for any weight, bounded work

# What each kind of server does with each mode, as measured against llama_cpp.server (see
# tests/test_llamacpp_server.py); a server not recognised gets whatever is configured.
SERVERS = {
    'vllm': ('vLLM', MODES),
    'me': ('llama-cpp-python server (python -m llama_cpp.server)', ('none', 'grammar')),
    'llamacpp': ('llama.cpp server (llama-server)', ('none', 'grammar', 'response_format')),
}
WHY_NOT = {
    'regex': "it ignores vLLM's structured_outputs field",
    'json': "it ignores vLLM's structured_outputs field",
    'response_format': 'it answers response_format json_schema with HTTP 500',
}


def unsupported(mode: str, owned_by: str | None, where: str) -> str | None:
    """The one line refusing `mode` on a server whose /v1/models says `owned_by`, or None when it works."""
    if owned_by not in SERVERS:
        return None
    name, modes = SERVERS[owned_by]
    if mode in modes:
        return None
    return (
        f'agent.policy.structured_output: {mode!r} does not work with the {name} at {where} '
        f'({WHY_NOT.get(mode, "not supported")}); this server supports structured_output: ' + ' or '.join(modes)
    )


# ---------------------------------------------------------------- the number language
# A pattern is a tiny tree so the same language can be written as a Python/vLLM regex and as GBNF:
# ('lit', text) | ('cls', '0-9', min, max) | ('seq', [...]) | ('alt', [...]) | ('opt', node)


def _lit(text: str):
    return ('lit', text)


def _digits(low: str, high: str, count_min: int = 1, count_max: int = 1):
    return ('cls', low if low == high else f'{low}-{high}', count_min, count_max)


def _seq(*items):
    items = [i for i in items if not (i[0] == 'lit' and i[1] == '')]
    return items[0] if len(items) == 1 else ('seq', list(items))


def _alt(items):
    return items[0] if len(items) == 1 else ('alt', list(items))


def _optional(node):
    """node? -- `[0-9]{1,5}?` is written `[0-9]{0,5}` (llguidance's GBNF reader misreads the former)."""
    if node[0] == 'cls' and node[2] == 1:
        return ('cls', node[1], 0, node[3])
    return ('opt', node)


def _fixed(lo: str, hi: str):
    """Digit strings of width len(lo) == len(hi) from lo to hi (inclusive), as a list of alternatives."""
    if not lo:
        return [_lit('')]
    rest = len(lo) - 1
    if set(lo[1:]) <= {'0'} and set(hi[1:]) <= {'9'}:
        return [_seq(_digits(lo[0], hi[0]), *([_digits('0', '9', rest, rest)] if rest else []))]
    a, b = int(lo[0]), int(hi[0])
    if a == b:
        return [_seq(_lit(lo[0]), _alt(_fixed(lo[1:], hi[1:])))]
    middle = _fixed(f'{a + 1}' + '0' * rest, f'{b - 1}' + '9' * rest) if b - a > 1 else []
    return _fixed(lo, lo[0] + '9' * rest) + middle + _fixed(hi[0] + '0' * rest, hi)


def _integers(a: int, b: int):
    """Integers a..b without leading zeros."""
    out = []
    for width in range(len(str(a)), len(str(b)) + 1):
        low = max(a, 10 ** (width - 1) if width > 1 else 0)
        high = min(b, 10**width - 1)
        if low <= high:
            out += _fixed(str(low), str(high))
    return out


def _fraction(lo: str, hi: str, pos: int = 0, tight_lo: bool = True, tight_hi: bool = True):
    """Written fraction digits w (0..DECIMALS of them, from position `pos`) with lo <= w padded with zeros
    <= hi, where `tight_*` says the digits so far equal lo's / hi's. Returns (w may be empty, the
    alternatives for a non-empty w)."""
    left = DECIMALS - pos
    tight_lo = tight_lo and not set(lo[pos:]) <= {'0'}  # every w >= 0...0 and <= 9...9
    tight_hi = tight_hi and not set(hi[pos:]) <= {'9'}
    if not tight_lo and not tight_hi:
        return True, [_digits('0', '9', 1, left)] if left else []
    if not tight_lo and set(hi[pos:]) <= {'0'}:
        return True, [_digits('0', '0', 1, left)]
    empty = not tight_lo
    if not left:
        return empty, []
    d_lo = int(lo[pos]) if tight_lo else 0
    d_hi = int(hi[pos]) if tight_hi else 9
    edges = (
        [(d_lo, tight_lo, tight_hi)]
        if d_lo == d_hi
        else [(d, t_lo, t_hi) for d, t_lo, t_hi in ((d_lo, tight_lo, False), (d_hi, False, tight_hi)) if t_lo or t_hi]
    )
    out = []
    for d, t_lo, t_hi in edges:
        tail_empty, tails = _fraction(lo, hi, pos + 1, t_lo, t_hi)
        if tails:
            tail = _alt(tails)
            out.append(_seq(_lit(str(d)), _optional(tail) if tail_empty else tail))
        elif tail_empty:
            out.append(_lit(str(d)))
    inner_lo = d_lo + 1 if tight_lo else d_lo
    inner_hi = d_hi - 1 if tight_hi else d_hi
    if d_lo != d_hi and inner_lo <= inner_hi:
        more = [_digits('0', '9', 0, left - 1)] if left > 1 else []
        out.append(_seq(_digits(str(inner_lo), str(inner_hi)), *more))
    return empty, out


def _with_fraction(integer, lo: str, hi: str):
    empty, tails = _fraction(lo, hi)
    part = _seq(_lit('.'), _alt(tails)) if tails else None
    if part is None:
        return integer
    return _seq(integer, _optional(part)) if empty else _seq(integer, part)


def number_pattern(low: float, high: float):
    """Non-negative decimals in [low, high] with at most DECIMALS decimals; None when there are none."""
    scale = Decimal(10) ** DECIMALS
    lo = int((Decimal(repr(float(low))) * scale).to_integral_value(ROUND_CEILING))
    hi = int((Decimal(repr(float(high))) * scale).to_integral_value(ROUND_FLOOR))
    if lo > hi or lo < 0:
        return None
    unit = 10**DECIMALS
    (ia, fa), (ib, fb) = divmod(lo, unit), divmod(hi, unit)
    fa, fb = f'{fa:0{DECIMALS}d}', f'{fb:0{DECIMALS}d}'
    if ia == ib:
        return _with_fraction(_lit(str(ia)), fa, fb)
    out = [_with_fraction(_lit(str(ia)), fa, '9' * DECIMALS)]
    if ib - ia > 1:
        out.append(_with_fraction(_alt(_integers(ia + 1, ib - 1)), '0' * DECIMALS, '9' * DECIMALS))
    out.append(_with_fraction(_lit(str(ib)), '0' * DECIMALS, fb))
    return _alt(out)


def _numbers(count: int, bounds: tuple[float, float]):
    """`count` numbers joined by ':' (the ratio form) -- the caller joins; here: the alternatives of
    (zero, non-zero, any) triples that keep at least one weight non-zero."""
    low, high = float(bounds[0]), float(bounds[1])
    anything = number_pattern(low, high)
    if anything is None:
        raise ValueError(f'no number with at most {DECIMALS} decimals lies in [{low:g}, {high:g}]')
    if low > 0:
        return [[anything] * count]
    zero, nonzero = number_pattern(0, 0), number_pattern(10.0**-DECIMALS, high)
    if nonzero is None:
        raise ValueError(f'bounds [{low:g}, {high:g}] only allow all-zero weights')
    return [[zero] * k + [nonzero] + [anything] * (count - k - 1) for k in range(count)]


# ---------------------------------------------------------------- writing patterns
def _write(node, literal, join: str, bar: str) -> str:
    kind = node[0]
    if kind == 'lit':
        return literal(node[1])
    if kind == 'cls':
        _, chars, n, m = node
        return f'[{chars}]' + ('' if (n, m) == (1, 1) else f'{{{n}}}' if n == m else f'{{{n},{m}}}')
    if kind == 'seq':
        return join.join(_write(i, literal, join, bar) for i in node[1])
    if kind == 'alt':
        return '(' + bar.join(_write(i, literal, join, bar) for i in node[1]) + ')'
    inner = _write(node[1], literal, join, bar)
    return (inner if node[1][0] == 'alt' else f'({inner})') + '?'


def _regex(node) -> str:
    return _write(node, re.escape, '', '|')


def _gbnf(node) -> str:
    return _write(node, gbnf_literal, ' ', ' | ')


def gbnf_literal(text: str) -> str:
    return '"' + text.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'


# ---------------------------------------------------------------- the answer forms
def _thoughts_repeat(max_thoughts: int | None, at_least: int) -> str:
    return f'{{{at_least},{int(max_thoughts)}}}' if max_thoughts else ('+' if at_least else '*')


def weights_regex(
    loss_names: list[str], bounds: tuple[float, float] = (0.0, 100.0), max_thoughts: int | None = None
) -> str:
    """'Weights: L1:Perceptual:GAN=0.7:0.3:0.05\\nThoughts: ...' with every number in bounds."""
    rows = [':'.join(_regex(p) for p in row) for row in _numbers(len(loss_names), bounds)]
    values = rows[0] if len(rows) == 1 else '(' + '|'.join(rows) + ')'
    names = ':'.join(re.escape(n) for n in loss_names)
    return f'Weights: {names}={values}\\nThoughts: [^\\n]{_thoughts_repeat(max_thoughts, 1)}'


def weights_gbnf(
    loss_names: list[str],
    bounds: tuple[float, float] = (0.0, 100.0),
    form: str = 'line',
    max_thoughts: int | None = None,
) -> str:
    """The same answers as GBNF (llama.cpp; also read by xgrammar and, via lark, llguidance).

    `form='line'`: the regex's `Weights:` line; `form='json'`: the JSON object of `weights_schema`
    written without extra whitespace and with the numbers bounded (llama.cpp's own schema
    converter drops `minimum`/`maximum`)."""
    low, high = float(bounds[0]), float(bounds[1])
    rules = {'num': _gbnf(number_pattern(low, high))}
    if low == 0:
        rules['zero'] = _gbnf(number_pattern(0, 0))
        rules['nonzero'] = _gbnf(number_pattern(10.0**-DECIMALS, high))
    names = list(loss_names)
    if form == 'line':
        first, sep = gbnf_literal(f'Weights: {":".join(names)}='), ' ":" '
        last = f' "\\nThoughts: " [^\\n]{_thoughts_repeat(max_thoughts, 1)}'
        keys = [''] * len(names)
    elif form == 'json':
        first, sep = '"{\\"weights\\": {"', ' ", " '
        last = f' "}}, \\"thoughts\\": \\"" jsonchar{_thoughts_repeat(max_thoughts, 0)} "\\"}}"'
        keys = [gbnf_literal(f'"{n}": ') + ' ' for n in names]
        rules['jsonchar'] = '[^"\\\\\\x00-\\x1f] | "\\\\" ["\\\\/bfnrt]'
    else:
        raise ValueError(f"form: got {form!r}; expected 'line' or 'json'")
    rows = []
    for k in range(len(names) if low == 0 else 1):
        kinds = ['zero'] * k + ['nonzero'] + ['num'] * (len(names) - k - 1) if low == 0 else ['num'] * len(names)
        rows.append(sep.join(f'{key}{kind}' for key, kind in zip(keys, kinds)))
    rules = {'values': '(' + ' | '.join(rows) + ')', **rules}
    root = f'root ::= {first} values{last}'
    return '\n'.join([root] + [f'{name} ::= {body}' for name, body in rules.items()]) + '\n'


def weights_schema(
    loss_names: list[str], bounds: tuple[float, float] = (0.0, 100.0), max_thoughts: int | None = None
) -> dict:
    number = {'type': 'number', 'minimum': bounds[0], 'maximum': bounds[1]}
    thoughts = {'type': 'string', **({'maxLength': int(max_thoughts)} if max_thoughts else {})}
    return {
        'type': 'object',
        'properties': {
            'weights': {
                'type': 'object',
                'properties': {n: dict(number) for n in loss_names},
                'required': list(loss_names),
                'additionalProperties': False,
            },
            'thoughts': thoughts,
        },
        'required': ['weights', 'thoughts'],
        'additionalProperties': False,
    }


def request_fields(
    mode: str, loss_names: list[str], bounds: tuple[float, float] = (0.0, 100.0), max_thoughts: int | None = None
) -> dict:
    """Keyword arguments for `client.chat.completions.create` (merged into extra_body there)."""
    if mode == 'regex':
        return {'extra_body': {'structured_outputs': {'regex': weights_regex(loss_names, bounds, max_thoughts)}}}
    if mode == 'json':
        return {'extra_body': {'structured_outputs': {'json': weights_schema(loss_names, bounds, max_thoughts)}}}
    if mode == 'response_format':
        return {
            'response_format': {
                'type': 'json_schema',
                'json_schema': {
                    'name': 'loss_weights',
                    'schema': weights_schema(loss_names, bounds, max_thoughts),
                    'strict': True,
                },
            }
        }
    if mode == 'grammar':
        grammar = weights_gbnf(loss_names, bounds, max_thoughts=max_thoughts)
        return {'extra_body': {'grammar': grammar, 'structured_outputs': {'grammar': grammar}}}
    return {}


def local_grammar(
    mode: str, loss_names: list[str], bounds: tuple[float, float] = (0.0, 100.0), max_thoughts: int | None = None
) -> str | None:
    """The GBNF the in-process llama.cpp backend applies for `mode` (None: free text)."""
    if mode in ('regex', 'grammar'):
        return weights_gbnf(loss_names, bounds, 'line', max_thoughts)
    if mode in ('json', 'response_format'):
        return weights_gbnf(loss_names, bounds, 'json', max_thoughts)
    return None
