"""Turn an LLM answer into loss weights, or a one-line reason why not.

Llama-3 does not always write the requested `Weights: L1:Perceptual:GAN=0.7:0.3:0.05`:
it adds prose, markdown (`**Weights:**`), spaces around `=` and `:`, writes
`L1=0.7, Perceptual=0.3, GAN=0.05`, bullet lists, `L1 loss: 0.7`, `.5`, or JSON when
structured output is on. All of these are accepted. Anything that could train a broken
model is rejected: wrong number of losses, unknown names, NaN/inf, negatives, values
outside `bounds`, all zeros (agent/weights.py's `check_weights`, the rule the options, the board
and the hook use too). Nothing here evaluates the text (no eval/exec), and every
regex is linear so a hostile answer cannot stall a stage boundary.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from ..weights import check_weights

MAX_CHARS = 20000  # answers are capped by max_tokens anyway; this bounds the work on garbage
# possessive quantifiers and the look-behind keep every scan linear: without them a run of
# 20000 digits followed by a letter is re-scanned from each of its positions (13 s)
NUM = r'(?<![\d.])[-+]?+(?:\d++(?:\.\d++)?+|\.\d++)(?:[eE][-+]?+\d++)?+'
FILLER = {'loss', 'losses', 'weight', 'weights', 'the', 'of', 'and', 'to', 'be', 'set', 'should'}
EQUALS = {'is', 'are', 'becomes', 'equals'}  # 'the L1 weight is 0.7' reads as L1=0.7
MARKDOWN = re.compile(r'[*`#>]+|(?<![A-Za-z0-9])__|__(?![A-Za-z0-9])')  # keep single _ (names)
MARKER = re.compile(r'weights?\s*(?:[:=]|is\b|are\b)', re.IGNORECASE)
MARKER_LINE = re.compile(r'^[ \t]*weights?\s*[:=]', re.IGNORECASE | re.MULTILINE)
THOUGHTS = re.compile(r'thoughts?\s*[:=]', re.IGNORECASE)
PAREN = re.compile(r'\([^()\n]{0,300}\)')
ARROW = re.compile(NUM + r'[ \t]*(?:->|=>|\u2192|\u27f6)[ \t]*(?=[-+.\d])')
LIST_ITEM = re.compile(r'^\s*(?:[-+\u2022]|\d{1,2}[.)])\s+', re.MULTILINE)


@dataclass
class ParseResult:
    weights: dict[str, float] | None = None  # in loss_names order; None when rejected
    error: str | None = None  # why it was rejected
    thoughts: str | None = None
    form: str = ''  # which spelling was recognised: ratio/pairs/values/json

    @property
    def ok(self) -> bool:
        return self.weights is not None


@dataclass
class _Attempt:
    errors: list[str] = field(default_factory=list)

    def first_error(self, default: str) -> str:
        return self.errors[0] if self.errors else default


def parse_answer(text, loss_names: list[str], bounds: tuple[float, float] = (0.0, 100.0)) -> ParseResult:
    """Never raises; `result.weights` is either None or valid (finite, in bounds, not all zero)."""
    try:
        return _parse(text, list(loss_names), (float(bounds[0]), float(bounds[1])))
    except Exception as e:  # a parser bug must not stop training; the answer is just rejected
        return ParseResult(error=f'parser error: {type(e).__name__}: {e}')


def format_example(loss_names: list[str]) -> str:
    return 'Weights: ' + ':'.join(loss_names) + '=' + ':'.join('?' for _ in loss_names)


def _parse(text, names: list[str], bounds: tuple[float, float]) -> ParseResult:
    if not isinstance(text, str):
        return ParseResult(error=f'answer is not text ({type(text).__name__})')
    text = text[:MAX_CHARS]
    if not text.strip():
        return ParseResult(error='empty answer')
    attempt = _Attempt()
    if '{' in text:
        result = _from_json(text, names, bounds, attempt)
        if result:
            return result
    plain = MARKDOWN.sub(' ', text)
    thoughts = _thoughts(plain)
    tokenizer = _Tokenizer(names)
    # "L1: 0.9 -> 0.7" means the new value is 0.7; "L1 (0.7)" means L1: 0.7
    plain = ARROW.sub(' ', plain)
    plain = tokenizer.name_paren.sub(lambda m: f'{m.group(1)}: {m.group(2)}', plain)
    # The Thoughts often quote earlier weights ("previous weights L1:Perceptual:GAN=1.0:0.1:0.01"),
    # so the answer is looked for before them; after them only in a line starting "Weights:".
    stop = THOUGHTS.search(plain)
    head = plain[: stop.start()] if stop else plain
    found = _search(head, names, tokenizer, attempt, MARKER, unmarked=True)
    if found is None and stop:
        found = _search(plain[stop.start() :], names, tokenizer, attempt, MARKER_LINE, unmarked=False)
    if found is not None:
        return _validated(found, names, bounds, attempt, thoughts, tokenizer.form)
    return ParseResult(error=attempt.first_error(f"no '{format_example(names)}' line found"), thoughts=thoughts)


def _search(
    plain: str, names, tokenizer: _Tokenizer, attempt: _Attempt, marker: re.Pattern, unmarked: bool
) -> list | None:
    # 1. segments after a "Weights:" marker, first readable one wins (echoed rules like
    #    'Weights: L1:Perceptual:GAN=?:?:?' simply fail and the next one is tried)
    for count, match in enumerate(marker.finditer(plain)):
        if count >= 50:  # a real answer has a few; thousands are an attack on our time
            break
        values = tokenizer.read(_segment(plain, match.end(), tokenizer.names), names, attempt)
        if values is not None:
            return values
    if not unmarked:
        return None
    # 2. no marker: the name sequence anywhere, e.g. "I suggest L1:Perceptual:GAN = 0.7:0.3:0.05."
    seq = r'\s*[:/,]\s*'.join(re.escape(n) for n in names)
    for count, match in enumerate(re.finditer(r'(?<![A-Za-z0-9_])' + seq + r'\s*[=:]', plain, re.IGNORECASE)):
        if count >= 50:
            break
        if _after_example(plain, match.start()):
            continue
        values = tokenizer.read(_segment(plain, match.start(), tokenizer.names), names, attempt)
        if values is not None:
            return values
    # 3. `name: value` pairs anywhere: "L1 weight: 0.7, ...", "The L1 weight is 0.7, ...", tables
    for _, match in zip(range(50), tokenizer.names.finditer(plain)):
        if _after_example(plain, match.start()):
            continue
        pairs = tokenizer._pairs(tokenizer.tokens(_segment(plain, match.start(), tokenizer.names)), names, _Attempt())
        if pairs and {k.lower() for k, _ in pairs} == {n.lower() for n in names}:
            tokenizer.form = 'pairs'
            return pairs
    return None


def _after_example(text: str, start: int) -> bool:
    """An echoed format rule: '(for example: L1:Perceptual:GAN=1.0:0.1:0.01)' is not an answer."""
    return 'example' in text[max(0, start - 20) : start].lower()


def _segment(text: str, start: int, names: re.Pattern) -> str:
    """The answer from `start` to the Thoughts marker or a blank line after some content."""
    rest = text[start : start + 600]
    stop = THOUGHTS.search(rest)
    if stop:
        rest = rest[: stop.start()]
    lines, seen = [], False
    for line in rest.split('\n'):
        if not line.strip():
            if seen:
                break
            continue
        seen = True
        lines.append(line)
    # a line break ends a run of values (';') but not a list of `name: value` pairs
    text = LIST_ITEM.sub(' ', '\n'.join(lines)).replace('\n', ' ; ')
    # asides in parentheses that contain words other than loss names:
    # "L1: 0.7 (down from 0.79)", "(for example: ...)"; but keep "(L1:Perceptual:GAN)"
    return PAREN.sub(lambda m: ' ' if re.search(r'[A-Za-z]{2}', names.sub('', m.group(0))) else m.group(0), text)


def _thoughts(text: str) -> str | None:
    match = THOUGHTS.search(text)
    if not match:
        return None
    return text[match.end() :].strip()[:2000] or None


class _Tokenizer:
    """Tokens: loss names (known or not), numbers, separators, other words/characters."""

    def __init__(self, names: list[str]):
        known = '|'.join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        self.pattern = re.compile(
            r'\s*(?:(?P<num>' + NUM + r')(?![A-Za-z0-9_])'
            r'|(?P<name>(?:' + known + r')(?![A-Za-z0-9_])|[A-Za-z_][A-Za-z0-9_]*)'
            r'|(?P<sep>[:=,;/|])|(?P<other>\S))',
            re.IGNORECASE,
        )
        self.lower = {n.lower(): n for n in names}
        self.names = re.compile(r'(?<![A-Za-z0-9_])(?:' + known + r')(?![A-Za-z0-9_])', re.IGNORECASE)
        self.name_paren = re.compile(
            r'(?<![A-Za-z0-9_])(' + known + r')[ \t]*\([ \t]*(' + NUM + r')[ \t]*\)', re.IGNORECASE
        )
        self.form = ''

    def tokens(self, text: str) -> list[tuple[str, str]]:
        out = []
        for m in self.pattern.finditer(text):
            kind = m.lastgroup
            value = m.group(kind)
            if kind == 'name' and value.lower() not in self.lower:
                if value.lower() in FILLER:
                    continue  # "L1 loss: 0.7"
                if value.lower() in EQUALS:
                    kind, value = 'sep', '='
            if kind == 'name' and value.lower() in ('nan', 'inf', 'infinity'):
                kind = 'bad'
            if kind == 'other' and value in '()[]{}"\'':
                continue  # "(L1:Perceptual:GAN) = (0.7:0.3:0.05)"
            out.append((kind, value))
            if len(out) > 200:
                break
        return out

    def read(self, text: str, names: list[str], attempt: _Attempt) -> list[tuple[str, float]] | None:
        """(name, value) pairs in the answer's order, or None with the reason in `attempt`."""
        toks = self.tokens(text)
        if not toks:
            attempt.errors.append('no weights after "Weights:"')
            return None
        for reader in (self._ratio, self._pairs, self._values):
            out = reader(toks, names, attempt)
            if out is not None:
                self.form = reader.__name__.strip('_')
                return out
        return None

    def _ratio(self, toks, names, attempt):
        """L1:Perceptual:GAN=0.7:0.3:0.05 (names first, then values)."""
        i, got = 0, []
        while i < len(toks) and toks[i][0] == 'name':
            got.append(toks[i][1])
            if (
                i + 1 < len(toks)
                and toks[i + 1][0] == 'sep'
                and toks[i + 1][1] in ':/,|'
                and i + 2 < len(toks)
                and toks[i + 2][0] == 'name'
            ):
                i += 2
                continue
            i += 1
            break
        if len(got) < 2 or i >= len(toks) or toks[i] != ('sep', '=') and toks[i] != ('sep', ':'):
            return None
        values = self._number_run(toks, i + 1, attempt)
        if values is None:
            return None
        if len(values) != len(got):
            attempt.errors.append(f'{len(got)} names but {len(values)} values')
            # only loss names: a recognised but broken ratio, stop trying other spellings;
            # else it was prose ("New weights: L1 = 0.7, ...") and another reading may work
            return [] if all(g.lower() in self.lower for g in got) else None
        return list(zip(got, values))

    def _pairs(self, toks, names, attempt):
        """L1=0.7, Perceptual=0.3, GAN=0.05 (also `L1: 0.7` and `L1 loss = 0.7`)."""
        out, i = [], 0
        while i + 2 < len(toks) and toks[i][0] == 'name' and toks[i + 1][0] == 'sep' and toks[i + 1][1] in '=:|':
            kind, value = toks[i + 2]
            if kind == 'bad':
                attempt.errors.append(f'non-finite weight {value!r}')
                return []
            if kind != 'num':
                break
            out.append((toks[i][1], float(value)))
            i += 3
            while i < len(toks) and toks[i][0] == 'sep' and toks[i][1] in ',;|:':
                i += 1
            if i < len(toks) and toks[i] == ('name', 'and'):
                i += 1
        return out if len(out) >= 2 else None

    def _values(self, toks, names, attempt):
        """0.7:0.3:0.05 (values only, in the order of the loss names)."""
        values = self._number_run(toks, 0, attempt)
        if values is None or len(values) < 2:
            return None
        return (
            list(zip(names, values))
            if len(values) == len(names)
            else attempt.errors.append(f'expected {len(names)} weights, got {len(values)}') or []
        )

    @staticmethod
    def _number_run(toks, i, attempt) -> list[float] | None:
        values = []
        while i < len(toks):
            kind, value = toks[i]
            if kind == 'bad':
                attempt.errors.append(f'non-finite weight {value!r}')
                return []
            if kind != 'num':
                break
            values.append(float(value))
            if (
                i + 1 < len(toks)
                and toks[i + 1][0] == 'sep'
                and toks[i + 1][1] in ':/,|'
                and i + 2 < len(toks)
                and toks[i + 2][0] in ('num', 'bad')
            ):
                i += 2
            else:
                i += 1
                break
        if not values:
            if i < len(toks) and toks[i][0] == 'other' and toks[i][1] == '?':
                attempt.errors.append("the answer repeats the '?' placeholders instead of numbers")
            return None
        return values


def _from_json(text: str, names, bounds, attempt: _Attempt) -> ParseResult | None:
    """`{"weights": {"L1": 0.7, ...}, "thoughts": "..."}` anywhere in the text (also fenced)."""
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r'\{', text)][:20]
    for start in starts:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except Exception:  # ValueError, RecursionError on deep nesting, huge ints
            continue
        if not isinstance(obj, dict):
            continue
        lowered = {str(k).lower(): v for k, v in obj.items()}
        weights = lowered.get('weights', lowered.get('loss_weights', obj))
        thoughts = lowered.get('thoughts', lowered.get('reason'))
        thoughts = str(thoughts)[:2000] if thoughts is not None else None
        if isinstance(weights, list):
            pairs = list(zip(names, weights)) if len(weights) == len(names) else None
            if pairs is None:
                attempt.errors.append(f'expected {len(names)} weights, got {len(weights)}')
                continue
        elif isinstance(weights, dict):
            pairs = list(weights.items())
            if weights is obj and not {str(k).lower() for k in obj} & {n.lower() for n in names}:
                continue  # some other JSON object, not weights
        else:
            attempt.errors.append('"weights" is neither an object nor a list')
            continue
        values = []
        for key, value in pairs:
            number = _json_number(value)
            if number is None:
                attempt.errors.append(f'weight of {key} is not a number: {str(value)[:40]!r}')
                break
            values.append((str(key), number))
        else:
            return _validated(values, names, bounds, attempt, thoughts, 'json')
    return None


def _json_number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    if isinstance(value, str) and re.fullmatch(r'\s*(' + NUM + r')\s*', value):
        return float(value)
    return None


def _validated(values: list[tuple[str, float]], names, bounds, attempt, thoughts, form) -> ParseResult:
    def reject(msg: str) -> ParseResult:
        return ParseResult(error=msg, thoughts=thoughts)

    if not values:  # a recognised but broken spelling; the reason is already recorded
        return reject(attempt.first_error('no weights found'))
    lower = {n.lower(): n for n in names}
    got: dict[str, float] = {}
    for key, value in values:
        name = lower.get(key.lower())
        if name is None:
            return reject(f'unknown loss {key[:40]!r}; expected {":".join(names)}')
        if name in got:
            return reject(f'{name} given twice')
        got[name] = value
    problem = check_weights(got, names, bounds)  # the one weight rule (agent/weights.py)
    if problem:
        return reject(problem)
    return ParseResult(weights={n: got[n] for n in names}, thoughts=thoughts, form=form)
