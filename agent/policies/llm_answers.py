"""What the answers of one boundary add up to: one weight per loss from the usable answers
(`aggregate`), a trust region around the current weights (`trust_region`), and how the answers met
the format (`compliance`): the llm policy's bookkeeping, kept apart from how it asks.

Every decision carries `info['compliance']`, how the answers met the format:

    prompts            prompts of this boundary (one per image, or one)
    first_valid        first answers that gave usable weights (the paper's "parseable" count)
    reprompted         answers that were not usable and asked again
    recovered          ... of which the second answer was usable
    valid              prompts that ended with usable weights (first_valid + recovered)
    no_answer          prompts the server never answered (errors, timeouts, abandoned)
    forms              {spelling: count} of the usable answers (ratio, pairs, values, json)
    repeats_example    usable answers whose weights are the format example's (the initial weights)
    repeats_current    usable answers whose weights are the current ones (nothing changed)
    template_thoughts  usable answers whose Thoughts repeat the format's placeholder text
    images             per prompt: {image, valid, reprompted, forms: [per answer: spelling or None],
                       errors: [per answer: why it was not usable, or None]}
"""

from __future__ import annotations

import math
import statistics
from collections import Counter

from ..llm.prompts import PLACEHOLDER_THOUGHTS


def aggregate(values: list[float], how: str, trim: float = 0.2) -> float:
    """One loss's weight from the usable answers: mean, median, or the mean without the lowest and the
    highest `trim` share (at least one answer is always kept)."""
    if how == 'median':
        return statistics.median(values)
    if how == 'trimmed':
        ordered, cut = sorted(values), math.floor(len(values) * trim)
        return statistics.fmean(ordered[cut : len(ordered) - cut] or ordered)
    return statistics.fmean(values)


def trust_region(proposed: dict, current: dict, factor: float | None) -> tuple[dict, list[str]]:
    """Each weight moved at most by `factor` (x or /) from its current value, and the names it limited.
    A weight at zero stays there: no factor moves it."""
    if not factor:
        return dict(proposed), []
    applied, limited = {}, []
    for name, value in proposed.items():
        now = current[name]
        low, high = now / factor, now * factor
        applied[name] = float(f'{min(max(value, low), high):.6g}')
        if not low <= value <= high:
            limited.append(name)
    return applied, limited


def _same(a: dict | None, b: dict, names: list[str]) -> bool:
    """Weights equal to five significant digits (as the prompt writes them)."""
    return a is not None and all(float(f'{a[n]:.5g}') == float(f'{b[n]:.5g}') for n in names)


def compliance(images: list[dict], current: dict, example: dict, names: list[str]) -> dict:
    """The format figures of one boundary (the schema is in the module docstring)."""
    forms = Counter(f for image in images for f in image['forms'] if f)
    usable = [image for image in images if image['valid']]
    placeholder = PLACEHOLDER_THOUGHTS.strip('()').lower()
    first_valid = sum(1 for image in images if image['forms'] and image['forms'][0])
    reprompted = sum(1 for image in images if image['reprompted'])
    valid = sum(1 for image in images if image['valid'])
    return {
        'prompts': len(images),
        'first_valid': first_valid,
        'reprompted': reprompted,
        'recovered': valid - first_valid,
        'valid': valid,
        'no_answer': sum(1 for image in images if not image['answered']),
        'forms': dict(forms),
        'repeats_example': sum(_same(image['weights'], example, names) for image in usable),
        'repeats_current': sum(_same(image['weights'], current, names) for image in usable),
        'template_thoughts': sum(placeholder in (image['thoughts'] or '').lower() for image in usable),
        'images': [
            {k: v for k, v in image.items() if k not in ('answered', 'weights', 'thoughts')} for image in images
        ],
    }
