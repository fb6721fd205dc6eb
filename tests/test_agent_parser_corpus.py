"""How much of a realistic-but-messy answer corpus the parser recovers.

The corpus imitates what Llama-3-8B-Instruct writes for the paper's prompt: prose before
and after, markdown, different spellings of the weights, number formats, asides. Answers
with a clear intent must give exactly the intended weights; broken ones (wrong count,
negative, NaN, zeros, placeholders, refusals) must be rejected. Run it as a script to
print the numbers:  PYTHONPATH=. python tests/test_agent_parser_corpus.py
"""

import random

from agent.llm.parser import parse_answer

N = ['L1', 'Perceptual', 'GAN']
PRE = [
    '',
    "Based on the historical data and the goal of improving image quality (lower score), here's a "
    'proposed set of updated loss weights for your SR model:\n\n',
    'Sure! ',
    'After analyzing the historical weights and scores, I recommend:\n',
    "I'll help you develop new loss weights.\n\n",
    'Here are the new loss weights:\n',
]
POST = [
    '',
    '\nThoughts: Decreasing the L1 loss weight and slightly increasing the Perceptual loss weight '
    'seems beneficial based on the observed score changes.',
    '\n\nThoughts: The score improved when the GAN weight went up, so I increase it a little.',
    '\n\n**Thoughts:** I keep the L1 anchor and explore the GAN weight.',
    '\nThoughts: (The reason) previous weights L1:Perceptual:GAN=1.0:0.1:0.01 were too smooth.',
]


def number(rng, v):
    return rng.choice(
        [
            f'{v:g}',
            f'{v:.2f}',
            f'{v:.4f}',
            (f'{v:g}'.lstrip('0') if v < 1 else f'{v:g}'),
            f'{v:.1e}' if v < 0.1 else f'{v:g}',
        ]
    )


def styles(a, b, c):
    return [
        f'Weights: L1:Perceptual:GAN={a}:{b}:{c}',
        f'**Weights:** L1:Perceptual:GAN={a}:{b}:{c}',
        f'**Weights**: L1:Perceptual:GAN = {a} : {b} : {c}',
        f'Weights: L1:Perceptual:GAN = {a}:{b}:{c}',
        f'Weights: L1={a}, Perceptual={b}, GAN={c}',
        f'Weights: L1: {a}, Perceptual: {b}, GAN: {c}',
        f'Weights:\n- L1: {a}\n- Perceptual: {b}\n- GAN: {c}',
        f'Weights:\n* L1 loss: {a}\n* Perceptual loss: {b}\n* GAN loss: {c}',
        f'Weights:\n1. L1: {a} (slightly lower)\n2. Perceptual: {b} (higher)\n3. GAN: {c}',
        f'Weights: {a}:{b}:{c}',
        f'New weights: L1 loss = {a}, Perceptual loss = {b}, GAN loss = {c}',
        f'L1:Perceptual:GAN={a}:{b}:{c}',
        f'Weights: L1:Perceptual:GAN=({a}:{b}:{c})',
        f'Weights: L1:Perceptual:GAN={a}:{b}:{c} (normalized so that L1 stays the anchor)',
        'Weights: L1:Perceptual:GAN=?:?:? (for example: L1:Perceptual:GAN=1.0:0.1:0.01)\n'
        f'Weights: L1:Perceptual:GAN={a}:{b}:{c}',
        f'The L1 weight is {a}, the Perceptual weight is {b} and the GAN weight is {c}.',
        f'`Weights: L1:Perceptual:GAN={a}:{b}:{c}`',
        f'```\nWeights: L1:Perceptual:GAN={a}:{b}:{c}\n```',
        f'```json\n{{"weights": {{"L1": {a}, "Perceptual": {b}, "GAN": {c}}}, "thoughts": "..."}}\n```',
        f'| Loss | Weight |\n|---|---|\n| L1 | {a} |\n| Perceptual | {b} |\n| GAN | {c} |',
        f'Weights: L1:Perceptual:GAN = {a} / {b} / {c}',
        f'L1 loss weight: {a}\nPerceptual loss weight: {b}\nGAN loss weight: {c}',
    ]


def heldout_styles(a, b, c):
    """Written after the parser was tuned on styles(), and not tuned on: an honest second number."""
    return [
        f'Weights: L1:Perceptual:GAN={a}:{b}:{c}.',
        f'**L1:Perceptual:GAN = {a}:{b}:{c}**',
        f'Weights: L1:Perceptual:GAN= {a}: {b}: {c}',
        f'Weights: L1:Perceptual:GAN={a}:{b}:{c} (L1 decreased, GAN increased)',
        f'Weights: L1:Perceptual:GAN={a}:{b}:{c}\n\nAlternatively, you could try L1:Perceptual:GAN=0.6:0.4:0.05',
        f'Weights: L1 ({a}), Perceptual ({b}), GAN ({c})',
        f'Weights: L1 -> {a}, Perceptual -> {b}, GAN -> {c}',
        f'L1: 0.9 \u2192 {a}\nPerceptual: 0.2 \u2192 {b}\nGAN: 0.01 \u2192 {c}',
        f'Weights = {{L1: {a}, Perceptual: {b}, GAN: {c}}}',
        f'Weights: [L1, Perceptual, GAN] = [{a}, {b}, {c}]',
        f'Updated weights - L1: {a}; Perceptual: {b}; GAN: {c}',
        f'Weights: L1:Perceptual:GAN={a}:{b}:{c}, which keeps the ratio balanced.',
    ]


BROKEN = [
    'Weights: L1:Perceptual:GAN={a}:{b}',
    'Weights: L1:Perceptual:GAN={a}:{b}:{c}:0.1',
    'Weights: L1:Perceptual:GAN={a}:-{b}:{c}',
    'Weights: L1:Perceptual:GAN=nan:{b}:{c}',
    'Weights: L1:Perceptual:GAN=0:0:0',
    'Weights: L1:Perceptual:GAN=?:?:?',
    "I'm sorry, I cannot determine new weights from this information.",
    'Weights: L1:VGG:GAN={a}:{b}:{c}',
    'Weights: L1:Perceptual:GAN={a}e9:{b}:{c}',
    'Weights: L1=inf, Perceptual={b}, GAN={c}',
    'The weights should stay roughly the same.',
]


def corpus(n=2000, seed=0):
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        w = [
            round(rng.uniform(0.3, 1.2), rng.choice([1, 2, 3])),
            round(rng.uniform(0.01, 0.5), 3),
            round(rng.uniform(0.001, 0.1), rng.choice([3, 4])),
        ]
        nums = [number(rng, v) for v in w]
        group = 'tuned'
        if rng.random() < 0.2:
            text, intent = rng.choice(BROKEN).format(a=nums[0], b=nums[1], c=nums[2]), None
        elif rng.random() < 0.25:
            text, intent, group = rng.choice(heldout_styles(*nums)), {n: float(x) for n, x in zip(N, nums)}, 'heldout'
        else:
            text, intent = rng.choice(styles(*nums)), {n: float(x) for n, x in zip(N, nums)}
        items.append((rng.choice(PRE) + text + rng.choice(POST), intent, group))
    return items


def measure(n=2000):
    m = {
        'answers': n,
        'with_intent': 0,
        'recovered': 0,
        'wrong_values': 0,
        'broken': 0,
        'false_accepts': 0,
        'heldout': 0,
        'heldout_recovered': 0,
        'misses': [],
    }
    for text, intent, group in corpus(n):
        r = parse_answer(text, N)
        if intent is None:
            m['broken'] += 1
            m['false_accepts'] += r.ok
            continue
        m['with_intent'] += 1
        m['heldout'] += group == 'heldout'
        if r.ok and all(abs(r.weights[k] - intent[k]) < 1e-9 for k in N):
            m['recovered'] += 1
            m['heldout_recovered'] += group == 'heldout'
        elif r.ok:
            m['wrong_values'] += 1
            m['misses'].append(('WRONG', text))
        else:
            m['misses'].append(('MISS', text))
    m['recovered_fraction'] = m['recovered'] / m['with_intent']
    m['heldout_fraction'] = m['heldout_recovered'] / max(1, m['heldout'])
    return m


def test_corpus_recovery(capsys):
    m = measure()
    with capsys.disabled():
        print(
            f'\n[parser corpus] recovered {m["recovered"]}/{m["with_intent"]} = {m["recovered_fraction"]:.1%} '
            f'of answers with a clear intent (held-out styles: {m["heldout_recovered"]}/{m["heldout"]} = '
            f'{m["heldout_fraction"]:.1%}); wrong values {m["wrong_values"]}; '
            f'accepted {m["false_accepts"]}/{m["broken"]} broken answers'
        )
    assert m['false_accepts'] == 0
    assert m['recovered_fraction'] >= 0.85


if __name__ == '__main__':
    m = measure()
    print({k: v for k, v in m.items() if k != 'misses'})
    for kind, text in sorted(set(m['misses']))[:20]:
        print(kind, repr(text[-200:]))
