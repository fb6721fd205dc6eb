"""The answer parser: what Llama-3 really writes is accepted, anything unsafe is rejected."""

import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agent.llm.parser import parse_answer

N = ['L1', 'Perceptual', 'GAN']
W = {'L1': 0.7, 'Perceptual': 0.3, 'GAN': 0.05}


@pytest.mark.parametrize(
    'text',
    [
        'Weights: L1:Perceptual:GAN=0.7:0.3:0.05\nThoughts: because.',
        "Based on the historical data and the goal of improving image quality (lower score), here's a proposed "
        'set of updated loss weights for your SR model:\nWeights: L1:Perceptual:GAN=0.7:0.3:0.05\nThoughts: x',
        '**Weights:** L1:Perceptual:GAN=0.7:0.3:0.05',
        '**Weights: L1:Perceptual:GAN = 0.7 : 0.3 : 0.05**',
        'Weights: L1:Perceptual:GAN = 0.7 : 0.3 : 0.05',
        'Weights: L1=0.7, Perceptual=0.3, GAN=0.05',
        'Weights: L1: 0.7, Perceptual: 0.3, GAN: 0.05',
        'weights: l1:perceptual:gan=0.70:0.30:0.050',
        'WEIGHTS: L1:PERCEPTUAL:GAN=0.7:0.3:0.05',
        'Weights: GAN:L1:Perceptual=0.05:0.7:0.3',
        'Weights: 0.7:0.3:0.05',
        'Weights:\n- L1: 0.7\n- Perceptual: 0.3\n- GAN: 0.05\n\nThoughts: ...',
        'Weights:\n1. L1 loss = 0.7\n2. Perceptual loss = 0.3\n3. GAN loss = 0.05',
        'New weights are L1:Perceptual:GAN=0.7:0.3:0.05.',
        'I propose L1:Perceptual:GAN = 0.7:0.3:0.05 for the next stage.',
        'L1 loss weight: 0.7, Perceptual loss weight: 0.3, GAN loss weight: 0.05',
        '`Weights: L1:Perceptual:GAN=0.7:0.3:0.05`',
        '### Weights\nL1:Perceptual:GAN=0.7:0.3:0.05',
        'Weights: L1:Perceptual:GAN=7e-1:3e-1:5e-2',
        'Weights: (L1:Perceptual:GAN) = (0.7:0.3:0.05)',
        'Weights: L1:Perceptual:GAN=?:?:? (for example: L1:Perceptual:GAN=1.0:0.1:0.01)\n'
        'Weights: L1:Perceptual:GAN=0.7:0.3:0.05',
        '{"weights": {"L1": 0.7, "Perceptual": 0.3, "GAN": 0.05}, "thoughts": "t"}',
        '```json\n{"weights": {"l1": 0.7, "perceptual": "0.3", "gan": 0.05}}\n```',
        'Sure! {"weights": [0.7, 0.3, 0.05], "thoughts": "t"} hope it helps',
        '{"L1": 0.7, "Perceptual": 0.3, "GAN": 0.05}',
    ],
)
def test_accepts_what_llama_writes(text):
    r = parse_answer(text, N)
    assert r.ok, r.error
    assert r.weights == pytest.approx(W)
    assert list(r.weights) == N


def test_forms_and_thoughts():
    r = parse_answer('Weights: L1:Perceptual:GAN=.5:1:0\nThoughts: keep GAN off', N)
    assert r.weights == {'L1': 0.5, 'Perceptual': 1.0, 'GAN': 0.0}
    assert r.thoughts == 'keep GAN off' and r.form == 'ratio'
    assert parse_answer('Weights: L1:Perceptual:GAN=3:2:1', N).weights == {'L1': 3, 'Perceptual': 2, 'GAN': 1}


@pytest.mark.parametrize(
    'text, error',
    [
        ('', 'empty'),
        ('I cannot help with that.', 'no'),
        ('Weights: L1:Perceptual:GAN=0.7:0.3', '3 names but 2 values'),
        ('Weights: L1:Perceptual:GAN=0.7:0.3:0.05:0.1', '3 names but 4 values'),
        ('Weights: L1:Perceptual=0.7:0.3', 'missing GAN'),
        ('Weights: L1:VGG:GAN=0.7:0.3:0.05', "unknown loss 'VGG'"),
        ('Weights: L1:Perceptual:GAN=0.7:-0.3:0.05', 'negative'),
        ('Weights: L1:Perceptual:GAN=nan:0.3:0.05', 'non-finite'),
        ('Weights: L1:Perceptual:GAN=inf:0.3:0.05', 'non-finite'),
        ('Weights: L1:Perceptual:GAN=1e400:0.3:0.05', 'not finite'),
        ('Weights: L1:Perceptual:GAN=500:0.3:0.05', 'outside the allowed range'),
        ('Weights: L1:Perceptual:GAN=0:0:0', 'all weights are zero'),
        ('Weights: L1:Perceptual:GAN=?:?:?', 'placeholders'),
        ('Weights: L1=0.7, L1=0.3, GAN=0.05', 'given twice'),
        ('{"weights": {"L1": 0.7, "Perceptual": true, "GAN": 0.05}}', 'not a number'),
        ('{"weights": {"L1": NaN, "Perceptual": 0.3, "GAN": 0.05}}', 'not finite'),
        ('{"weights": [0.7, 0.3]}', 'expected 3 weights'),
    ],
)
def test_rejects_with_a_reason(text, error):
    r = parse_answer(text, N)
    assert r.weights is None
    assert error in r.error


def test_bounds_configurable_and_non_text():
    assert parse_answer('Weights: L1:Perceptual:GAN=500:1:1', N, bounds=(0, 1000)).ok
    assert not parse_answer('Weights: L1:Perceptual:GAN=0.001:1:1', N, bounds=(0.01, 10)).ok
    assert parse_answer(None, N).error.startswith('answer is not text')
    assert parse_answer(b'Weights: 1:1:1', N).weights is None


def test_other_loss_names():
    names = ['L1', 'MSE', 'Perceptual', 'GAN', 'LPIPS']
    r = parse_answer('Weights: L1:MSE:Perceptual:GAN:LPIPS=1:0.5:0.1:0.01:1', names)
    assert r.weights == {'L1': 1, 'MSE': 0.5, 'Perceptual': 0.1, 'GAN': 0.01, 'LPIPS': 1}
    r = parse_answer('Weights: pix_l1:perc_vgg=1:0.1', ['pix_l1', 'perc_vgg'])
    assert r.weights == {'pix_l1': 1, 'perc_vgg': 0.1}


def test_hostile_inputs_are_fast_and_safe():
    for text in [
        '{' * 100000,
        '[' * 50000 + ']' * 50000,
        '9' * 100000,
        'Weights: ' + '1:' * 50000,
        '{"weights": {"L1": ' + '9' * 5000 + ', "Perceptual": 1, "GAN": 1}}',
        'Weights: L1:Perceptual:GAN=' + '0.' * 30000,
        '\x00\uffff' * 1000,
        '__import__("os").system("echo pwned")',
        'Weights: eval(1):1:1',
        '9' * 19999 + 'x',
        'Weights: ' * 5000,
        'L1:Perceptual:GAN=' * 2000,
        'L1 = ' * 5000,
        '(' * 20000 + ')' * 20000,
        '1e' * 10000,
        'Weights: L1 ' + '-> 1 ' * 5000,
    ]:
        start = time.monotonic()
        r = parse_answer(text, N)
        assert time.monotonic() - start < 0.5, text[:40]
        assert r.weights is None or _valid(r.weights)


def _valid(weights, bounds=(0.0, 100.0)):
    return (
        list(weights) == N
        and all(isinstance(v, (float, int)) for v in weights.values())
        and all(math.isfinite(v) and bounds[0] <= v <= bounds[1] for v in weights.values())
        and any(v != 0 for v in weights.values())
    )


# ------------------------------------------------------------------ fuzzing
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-1e3, max_value=1e3).map(lambda v: f'{v:g}'),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(
        [
            'nan',
            'NaN',
            'inf',
            '-inf',
            'Infinity',
            '1e999',
            '-0',
            '0',
            '.5',
            '5.',
            '1e-400',
            '0x10',
            '1_000',
            '½',
            '٣',
            '?',
            '',
            '-',
            '+',
            '1.2.3',
            '1e',
            'e5',
        ]
    ),
)
NAMES = st.one_of(
    st.sampled_from(N + ['l1', 'gan', 'PERCEPTUAL', 'VGG', 'MSE', 'loss', 'nan', '']), st.text(max_size=6)
)
SEPS = st.sampled_from([':', '=', ',', ' ', ' : ', ' = ', '/', ';', '\n', '**', '', '|', ' and '])


@st.composite
def ratio_answers(draw):
    names = draw(st.lists(NAMES, min_size=0, max_size=5))
    values = draw(st.lists(NUMBERS, min_size=0, max_size=5))
    sep = draw(SEPS)
    head = draw(st.sampled_from(['Weights: ', '**Weights:** ', 'weights = ', '', 'Weights:\n', '### Weights\n']))
    core = head + sep.join(names) + draw(SEPS) + sep.join(values)
    return draw(st.text(max_size=30)) + core + draw(st.text(max_size=30))


@st.composite
def pair_answers(draw):
    pairs = draw(st.lists(st.tuples(NAMES, SEPS, NUMBERS), max_size=6))
    return 'Weights: ' + draw(SEPS).join(f'{n}{s}{v}' for n, s, v in pairs)


JSONS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=8), NUMBERS),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.one_of(NAMES, st.just('weights')), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def json_answers(draw):
    obj = draw(JSONS)
    if draw(st.booleans()):
        obj = {'weights': obj, 'thoughts': draw(st.text(max_size=10))}
    text = json.dumps(obj, allow_nan=True)
    if draw(st.booleans()):  # cut it anywhere, as max_tokens does
        text = text[: draw(st.integers(0, len(text)))]
    return draw(st.sampled_from(['', '```json\n', 'Here: '])) + text


ANSWERS = st.one_of(
    st.text(max_size=300),
    ratio_answers(),
    pair_answers(),
    json_answers(),
    st.binary(max_size=50).map(lambda b: b.decode('latin-1')),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(ANSWERS, st.sampled_from([(0.0, 100.0), (0.0, 1.0), (0.01, 10.0)]))
def test_fuzz_never_raises_never_returns_invalid(text, bounds):
    r = parse_answer(text, N, bounds)
    assert (r.weights is None) != (r.error is None)
    if r.weights is not None:
        assert _valid(r.weights, bounds), (text, r)
