"""The policies answering: one entry's reading test, one entry's proposals at every decision point.

Each function handles one entry, so `pool_map` can spread the entries over processes (spawned, one
llama.cpp thread each): the answers do not depend on which process gave them, only their latency does.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from . import reading
from .policies import Entry, Sitter

TASK = 'image super-resolution (x4)'
FACTORS = ('noise', 'n_losses', 'shape', 'better')


def pool_map(fn, items: list, jobs: int, initializer=None, initargs=(), report=None) -> list:
    """`[fn(x) for x in items]`, in `jobs` spawned processes when jobs > 1; `report(item, result)` is
    called as each result arrives (in order)."""
    results = []
    if jobs <= 1 or len(items) <= 1:
        if initializer is not None:
            initializer(*initargs)
        for x in items:
            results.append(fn(x))
            if report:
                report(x, results[-1])
        return results
    with ProcessPoolExecutor(
        min(jobs, len(items)), mp_context=get_context('spawn'), initializer=initializer, initargs=initargs
    ) as pool:
        for x, result in zip(items, pool.map(fn, items)):
            results.append(result)
            if report:
                report(x, result)
    return results


def read_entry(job: tuple[Entry, list]) -> dict:
    """One entry decides every reading case: its summary, breakdown per factor and raw answers."""
    entry, cases = job
    started = time.perf_counter()
    decisions, latencies, compliant, copies, raw, sitters = [], [], [], [], [], {}
    for case in sorted(cases, key=lambda c: (c.n_losses, c.expert)):
        names, initial = reading.LOSSES[case.n_losses]
        group = (case.n_losses, case.expert)
        if entry.opt is None or entry.opt.get('type') != 'llm' or group not in sitters:
            for s in sitters.values():  # a stateless llm serves a whole group; others start fresh per case
                s.close()
            sitters = {group: Sitter(entry, list(names), list(initial), case.experts(), case.seed, TASK)}
        history = case.history()
        answer = sitters[group].propose(history)
        decisions.append((case, dict(history.last.weights), answer['weights']))
        latencies.append(answer['latency_s'])
        compliant.append(answer['fallback'] is None)
        if answer.get('compliance'):
            copies.append(bool(answer['compliance'].get('repeats_example')))
        raw.append({'policy': entry.label, 'case': case.key, **answer})
    for s in sitters.values():
        s.close()
    return {
        'label': entry.label,
        'result': {
            'score': reading.score(decisions),
            'compliance': sum(compliant) / len(compliant) if compliant else float('nan'),
            'latency': latencies,
            'copies': copies,
        },
        'breakdown': {f: reading.breakdown(decisions, f) for f in FACTORS},
        'raw': raw,
        'wall_s': round(time.perf_counter() - started, 1),
    }


def propose_entry(job: tuple) -> dict:
    """One entry's answers at every point: one instance per seed deciding that seed's boundaries in
    order (a stateful policy carries its state from one to the next, as in a run)."""
    from .states import history_at

    entry, runs, points, initial = job
    started = time.perf_counter()
    answers = {}
    for run in runs:
        sitter = None
        for point in [p for p in points if p.run.name == run.name]:
            history = history_at(point)
            if sitter is None:
                sitter = Sitter(entry, list(initial), list(initial.values()), history.last.experts, run.seed, TASK)
            answers[point.key] = sitter.propose(history)
        if sitter is not None:
            sitter.close()
    return {'label': entry.label, 'answers': answers, 'wall_s': round(time.perf_counter() - started, 1)}


def by_cost(entries: list[Entry]) -> list[Entry]:
    """The llm-backed entries first, so that a pool starts on the long ones."""
    return sorted(entries, key=lambda e: not (e.opt and 'llm' in str(e.opt)))
