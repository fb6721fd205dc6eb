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


def read_cases(job: tuple[Entry, list]) -> dict:
    """One entry decides some reading cases: (case, current, proposed) per decision, and the answers."""
    entry, cases = job
    started = time.perf_counter()
    decisions, raw, sitters = [], [], {}
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
        raw.append({'policy': entry.label, 'case': case.key, **answer})
    for s in sitters.values():
        s.close()
    return {'label': entry.label, 'decisions': decisions, 'raw': raw, 'wall_s': time.perf_counter() - started}


def reading_jobs(entries: list[Entry], cases: list) -> list[tuple[Entry, list]]:
    """One job per entry and (losses, expert) group: an llm loads once per group, and the jobs balance."""
    groups: dict = {}
    for case in cases:
        groups.setdefault((case.n_losses, case.expert), []).append(case)
    return [(e, group) for e in by_cost(entries) for group in groups.values()]


def summarise(outs: list[dict]) -> dict:
    """The jobs of one entry merged: its score, breakdown per factor, compliance, latencies, raw answers."""
    decisions = [d for out in outs for d in out['decisions']]
    raw = [a for out in outs for a in out['raw']]
    copies = [bool(a['compliance'].get('repeats_example')) for a in raw if a.get('compliance')]
    return {
        'result': {
            'score': reading.score(decisions),
            'compliance': sum(a['fallback'] is None for a in raw) / len(raw) if raw else float('nan'),
            'latency': [a['latency_s'] for a in raw],
            'copies': copies,
        },
        'breakdown': {f: reading.breakdown(decisions, f) for f in FACTORS},
        'raw': raw,
        'wall_s': sum(out['wall_s'] for out in outs),
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
