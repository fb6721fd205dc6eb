"""The regex, JSON schema and GBNF grammars the agent sends, in the engines that enforce them.

vLLM enforces `structured_outputs` with xgrammar or llguidance; llama.cpp enforces GBNF. Each is
run here on CPU with the real Llama-3 vocabulary (the vocabulary GGUF llama.cpp ships), and the
property is the one a vLLM user relies on (their server cannot run here): every answer a grammar
lets through parses back to the weights it spells, within `bounds`. Answers come two ways:
strings generated from the regex (hypothesis) that each engine must accept, and constrained
decoding walks -- a random token among those the engine allows, step after step -- which is what a
model under the grammar produces.
"""

import json
import re
import warnings
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import llama_cpp
import llguidance
import llguidance.llamacpp
import xgrammar as xgr

from agent.llm.parser import parse_answer
from agent.llm.structured import number_pattern, _regex, request_fields, weights_gbnf, weights_regex, weights_schema
from tiny_llama import EOT_ID, vocab_path

N = ['L1', 'Perceptual', 'GAN']
BOUNDS = [(0.0, 100.0), (0.5, 2.25), (0.0, 1.0)]
CANONICAL = re.compile(r'(0|[1-9][0-9]*)(\.[0-9]{1,6})?')


class Engines:
    """xgrammar and llguidance over the Llama-3 vocabulary, loaded once (~4 s)."""

    def __init__(self):
        self.vocab = llama_cpp.Llama(model_path=str(vocab_path()), vocab_only=True, verbose=False)
        self.size = self.vocab.n_vocab()
        pieces = [self.vocab.detokenize([i], special=False) for i in range(self.size)]  # control tokens: b''
        self.xgr = xgr.GrammarCompiler(
            xgr.TokenizerInfo(pieces, xgr.VocabType.RAW, stop_token_ids=[EOT_ID]), max_threads=1
        )
        with warnings.catch_warnings():  # llguidance asks llama.cpp with a deprecated name, once per token
            warnings.simplefilter('ignore', DeprecationWarning)
            self.ll = llguidance.llamacpp.lltokenizer_from_vocab(
                llama_cpp.llama_model_get_vocab(self.vocab.model), eos_token=EOT_ID
            )
        self.blank = np.array([not p.strip() for p in pieces])  # whitespace-only pieces
        self.closing = [
            t[0] for t in (self.vocab.tokenize(p.encode(), add_bos=False) for p in ('"}', '"', '}')) if len(t) == 1
        ]

    def text(self, tokens) -> str:
        return self.vocab.detokenize(tokens).decode('utf-8', errors='replace')

    # ---- the grammars, as vLLM (and for GBNF llama.cpp) hands them to each engine
    def compile_xgr(self, kind, bounds):
        if kind == 'regex':
            return self.xgr.compile_regex(weights_regex(N, bounds))
        if kind == 'schema':
            return self.xgr.compile_json_schema(json.dumps(weights_schema(N, bounds)))
        return self.xgr.compile_grammar(weights_gbnf(N, bounds, form=kind))

    def grammar_ll(self, kind, bounds):
        if kind == 'regex':
            return llguidance.LLMatcher.grammar_from_regex(weights_regex(N, bounds))
        if kind == 'schema':
            return llguidance.LLMatcher.grammar_from_json_schema(
                weights_schema(N, bounds), {'whitespace_flexible': True}
            )
        return llguidance.grammar_from('gbnf', weights_gbnf(N, bounds, form=kind))

    # ---- acceptance of a whole string
    def xgr_accepts(self, compiled, text: str) -> bool:
        matcher = xgr.GrammarMatcher(compiled)
        return matcher.accept_string(text) and matcher.accept_token(EOT_ID) and matcher.is_terminated()

    def ll_accepts(self, grammar, text: str) -> bool:
        matcher = llguidance.LLMatcher(self.ll, grammar)
        return matcher.consume_tokens(self.ll.tokenize_str(text)) and matcher.is_accepting()

    # ---- constrained decoding with a random "model"
    def allowed(self, words: bytes) -> np.ndarray:
        return np.flatnonzero(np.unpackbits(np.frombuffer(words, dtype=np.uint8), bitorder='little')[: self.size])

    def choose(self, allowed: np.ndarray, rng, finishing: bool) -> int:
        if EOT_ID in allowed and (finishing or rng.random() < 0.1):
            return EOT_ID
        if finishing:
            close = [t for t in self.closing if t in allowed]
            if close:
                return close[0]
        visible = allowed[~self.blank[allowed]]  # mostly not whitespace, or JSON walks drown in it
        pool = visible if len(visible) and rng.random() < 0.95 else allowed
        return int(pool[rng.integers(len(pool))])

    def walk_xgr(self, compiled, rng, free: int = 40, cap: int = 300) -> str:
        matcher, mask, out = xgr.GrammarMatcher(compiled), xgr.allocate_token_bitmask(1, self.size), []
        for step in range(cap):
            matcher.fill_next_token_bitmask(mask)
            token = self.choose(self.allowed(mask.numpy().tobytes()), rng, step >= free)
            assert matcher.accept_token(token)
            if token != EOT_ID:
                out.append(token)
            if matcher.is_terminated():
                return self.text(out)
        raise AssertionError(f'no end after {cap} tokens: {self.text(out)[:200]!r}')

    def walk_ll(self, grammar, rng, free: int = 40, cap: int = 300) -> str:
        matcher, out = llguidance.LLMatcher(self.ll, grammar), []
        for step in range(cap):
            token = self.choose(self.allowed(matcher.compute_bitmask()), rng, step >= free)
            assert matcher.consume_token(token), matcher.get_error()
            if token != EOT_ID:
                out.append(token)
            if matcher.is_stopped():  # after the end of turn, or at the grammar's last byte
                return self.text(out)
        raise AssertionError(f'no end after {cap} tokens: {self.text(out)[:200]!r}')


@pytest.fixture(scope='module')
def engines():
    return Engines()


def spelled(text: str):
    """The weights an answer spells, read without the parser."""
    if text.startswith('{'):
        return {k: float(v) for k, v in json.loads(text)['weights'].items()}
    values = re.match(r'Weights: L1:Perceptual:GAN=([^\n]*)\nThoughts: ', text).group(1).split(':')
    return dict(zip(N, map(float, values)))


def assert_parses_back(text: str, bounds, zero_allowed: bool = False):
    result = parse_answer(text, N, bounds)
    want = spelled(text)
    if zero_allowed and all(v == 0 for v in want.values()):
        assert result.error == 'all weights are zero', text
        return
    assert result.ok, (text, result.error)
    assert result.weights == want, text
    assert all(bounds[0] <= v <= bounds[1] for v in result.weights.values()) and any(result.weights.values())


@pytest.mark.parametrize(
    'low, high',
    [
        (0, 100),
        (0, 1),
        (0.5, 2.25),
        (0.001, 5),
        (3, 3),
        (0, 0.3),
        (1.25, 1.75),
        (7.5, 12),
        (0, 1000),
        (2.000001, 2.000009),
    ],
)
def test_number_pattern_is_exactly_the_interval(low, high):
    rng = np.random.default_rng(0)
    candidates = {'00', '01', '.5', '1.', '-1', '1e2', '0.0000001', '+1', ' 1'}
    for whole in list(range(0, 130)) + [999, 1000, 1001, 12345]:
        candidates.add(str(whole))
        for digits in range(1, 8):
            candidates |= {f'{whole}.' + ''.join(map(str, rng.integers(0, 10, digits))) for _ in range(4)}
            candidates |= {f'{whole}.' + '0' * digits, f'{whole}.' + '9' * digits}
    pattern = re.compile(_regex(number_pattern(low, high)))
    for text in candidates:
        inside = bool(CANONICAL.fullmatch(text)) and Decimal(str(low)) <= Decimal(text) <= Decimal(str(high))
        assert bool(pattern.fullmatch(text)) == inside, (text, low, high)


@pytest.mark.parametrize('bounds', BOUNDS)
def test_every_grammar_compiles_in_every_engine(engines, bounds):
    for kind in ('regex', 'schema', 'line', 'json'):
        engines.compile_xgr(kind, bounds)
        assert not llguidance.LLMatcher(engines.ll, engines.grammar_ll(kind, bounds)).is_error()
    for form in ('line', 'json'):  # llama.cpp's own GBNF parser (the in-process backend and llama_cpp.server)
        llama_cpp.LlamaGrammar.from_string(weights_gbnf(N, bounds, form=form), verbose=False)
    fields = request_fields('grammar', N, bounds)['extra_body']
    assert fields['grammar'] == fields['structured_outputs']['grammar'] == weights_gbnf(N, bounds)


@pytest.mark.parametrize('bounds', BOUNDS)
def test_regex_answers_are_accepted_by_the_engines_and_parse_back(engines, bounds):
    regex = weights_regex(N, bounds)
    compiled = {kind: engines.compile_xgr(kind, bounds) for kind in ('regex', 'line')}
    grammars = {kind: engines.grammar_ll(kind, bounds) for kind in ('regex', 'line')}

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.from_regex(regex, fullmatch=True))
    def check(text):
        for kind in ('regex', 'line'):  # structured_output: regex (vLLM) and grammar (llama.cpp, vLLM)
            assert engines.xgr_accepts(compiled[kind], text), (kind, text)
            assert engines.ll_accepts(grammars[kind], text), (kind, text)
        assert_parses_back(text, bounds)

    check()


@pytest.mark.parametrize('kind', ['regex', 'line', 'json', 'schema'])
def test_constrained_decoding_walks_parse_back(engines, kind):
    """30 random answers per engine and bounds; JSON schemas cannot forbid all-zero weights (the parser does)."""
    rng = np.random.default_rng(1)
    for bounds in BOUNDS:
        compiled, grammar = engines.compile_xgr(kind, bounds), engines.grammar_ll(kind, bounds)
        for _ in range(15):
            for text in (engines.walk_xgr(compiled, rng), engines.walk_ll(grammar, rng)):
                assert_parses_back(text.strip() if kind == 'schema' else text, bounds, zero_allowed=kind == 'schema')


def test_the_engines_refuse_what_the_parser_would_reject(engines):
    bounds = (0.0, 100.0)
    compiled = {kind: engines.compile_xgr(kind, bounds) for kind in ('regex', 'line', 'json', 'schema')}
    grammars = {kind: engines.grammar_ll(kind, bounds) for kind in ('regex', 'line', 'json', 'schema')}
    line = 'Weights: L1:Perceptual:GAN={}\nThoughts: why'
    for values in (
        '100.5:1:1',
        '0:0:0',
        '0.0:0:0.000000',
        '1e2:1:1',
        '-1:1:1',
        '1:1',
        '1:1:1:1',
        '.5:1:1',
        '1.0000001:1:1',
        '01:1:1',
        'nan:1:1',
    ):
        for kind in ('regex', 'line'):
            assert not engines.xgr_accepts(compiled[kind], line.format(values)), (kind, values)
            assert not engines.ll_accepts(grammars[kind], line.format(values)), (kind, values)
    obj = '{{"weights": {{"L1": {}, "Perceptual": 1, "GAN": 1}}, "thoughts": "why"}}'
    for value in ('100.5', '-1', '1e3'):
        for kind in ('json', 'schema'):
            assert not engines.xgr_accepts(compiled[kind], obj.format(value)), (kind, value)
            assert not engines.ll_accepts(grammars[kind], obj.format(value)), (kind, value)
    for kind in ('json', 'schema'):
        good = obj.format('0.5')
        assert engines.xgr_accepts(compiled[kind], good) and engines.ll_accepts(grammars[kind], good)
