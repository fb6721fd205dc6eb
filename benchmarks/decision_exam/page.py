"""benchmarks/exam.md from one exam run: what ran, the tables, and the verdicts the numbers give."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform

from . import reading
from .policies import THOUGHTS
from .report import counterfactual_table, grid_table, reading_breakdown, reading_table, table, wilson
from policy_study.stats import paired_t


def _minutes(seconds: float) -> str:
    return f'{seconds / 60:.1f} min'


def reading_verdicts(results: dict) -> list[str]:
    out = []
    for label, r in results.items():
        s = r['score']
        if s['n'] == 0:
            continue
        if s['n_moved'] == 0:
            out.append(f'- `{label}`: never moved the weight ({s["n"]} decisions): the reference, 0 % right by design.')
            continue
        low, high = wilson(s['n_right'], s['n'])
        where = 'above chance' if low > 0.5 else 'below chance' if high < 0.5 else 'at chance (the interval holds 50 %)'
        m_low, m_high = wilson(s['n_right'], s['n_moved'])
        out.append(
            f'- `{label}`: {s["n_right"]} of {s["n"]} decisions moved the weight the right way '
            f'({100 * s["right"]:.0f} %, 95 % [{100 * low:.0f}, {100 * high:.0f}] %): **{where}**; '
            f'{100 * s["unchanged"]:.0f} % changed nothing; of the {s["n_moved"]} that moved it, '
            f'{100 * s["right_of_moved"]:.0f} % [{100 * m_low:.0f}, {100 * m_high:.0f}] % went the right way.'
        )
    return out


def counterfactual_verdicts(cf: dict) -> list[str]:
    out = []
    for label, r in cf['rows'].items():
        finite = [g for g in r['val'] if math.isfinite(g)]
        if label == 'keep' or len(finite) < 2:
            continue
        t = paired_t(finite)
        if t.ci[0] > 0:
            word = 'better than keeping the current weights'
        elif t.ci[1] < 0:
            word = 'worse than keeping the current weights'
        else:
            word = 'not distinguishable from keeping the current weights'
        held = [g for g in r['heldout'] if math.isfinite(g)]
        h = paired_t(held) if len(held) >= 2 else None
        out.append(
            f'- `{label}`: {t.mean:+.3f} NIQE [{t.ci[0]:+.3f}, {t.ci[1]:+.3f}] on the agent images: **{word}**'
            + (f'; held-out photos {h.mean:+.3f} [{h.ci[0]:+.3f}, {h.ci[1]:+.3f}].' if h else '.')
        )
    o = [g for g in cf['oracle']['val'] if math.isfinite(g)]
    if len(o) >= 2:
        t = paired_t(o)
        out.append(
            f'- the one-step oracle (best of the grid, in hindsight): {t.mean:+.3f} NIQE [{t.ci[0]:+.3f}, '
            f'{t.ci[1]:+.3f}]: the headroom one decision has on this task at P = {cf.get("iterations", "?")}.'
        )
    return out


def render(args, parts: dict, wall_s: float, identity: str, command: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else math.nan
    entries = parts['entries']
    lines = [
        '# The decision exam (issue 21)',
        '',
        f'Measured {now} on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}, '
        f'load {load:.1f} at the end: the machine is shared). Everything on this page was written by',
        '',
        '```',
        command,
        '```',
        '',
        f'in **{_minutes(wall_s)}** of wall time in one go (the budget: 30 min on 2 cores). The LLM: {identity}.',
        '',
    ]
    rd, cf = parts.get('reading'), parts.get('counterfactual')
    lines += ['## Verdicts', '']
    if rd:
        lines += ['Reading test (chance 50 %):', ''] + reading_verdicts(rd['results']) + ['']
    if cf:
        cf['iterations'] = args.iterations
        lines += [
            f'Counterfactual decisions ({len(cf["points"])} decision points, gain = NIQE after keeping minus '
            'NIQE after the proposal, 95 % paired t-interval):',
            '',
        ]
        lines += counterfactual_verdicts(cf) + ['']
    lines += ['A policy at chance, or not distinguishable from keeping, is a result: it is reported as such.', '']
    if rd:
        lines += [
            '## Part 1: the reading test (no training)',
            '',
            f'{rd["cases"]} synthetic histories ({reading.STAGES} trained stages each, {_minutes(rd["wall_s"])}): '
            "only one weight (never the first loss) moves, and one expert's score is a monotone function "
            'of it. Crossed: 3 and 5 losses x noise none / low / high (sd '
            f"{', '.join(f'{v:g}' for v in reading.NOISE.values())} of one stage's effect) x the better "
            'direction (up / down) x the trajectory (rising, falling, zigzag); the expert alternates '
            'between NIQE (lower is better) and CLIPIQA (higher is better). Neither "follow the trend" nor '
            '"always raise" nor "always lower" beats 50 %. A move is read on the weight\'s ratio to the first '
            'loss (changes under 0.1 % count as none). Compliance: decisions answered without a fallback.',
            '',
            reading_table(rd['results']),
            '',
            'The fraction moved the right way, per level of each factor:',
            '',
            reading_breakdown(rd['breakdowns']),
            '',
        ]
    if cf:
        times = cf['times']
        reused = len(cf['reused_states'])
        lines += [
            '## Part 2: counterfactual decisions',
            '',
            f'Decision points: seeds {list(args.seeds)} x boundaries {cf["boundaries"]} = {len(cf["points"])}. '
            'The states: one `train.py` run per seed of options/train/demo_cpu.yml (its policy pinned to '
            f'adaptive-paired, which sets the weights), {cf["boundaries"][-1]} iterations, a checkpoint at every '
            'boundary; '
            f'cached under experiments/ by options and code hash ({_minutes(times["states_s"])} this time: '
            f'{reused} of {len(cf["state_runs"])} runs reused from the cache; making the runs took '
            f'{sum(v["wall_s"] for v in cf["state_runs"].values()) / 60:.1f} process-minutes, {args.jobs} at a time). '
            f'Proposals {_minutes(times["proposals_s"])}; {cf["branches"]} distinct branches trained and '
            f'scored in {_minutes(times["branches_s"])} ({args.jobs} processes).',
            '',
            counterfactual_table(cf['rows'], cf['oracle']),
            '',
            'Gains are in NIQE (lower NIQE is better, so a positive gain means the proposal beat keeping). '
            '"changed the weights": the proposal differed from the current weights (an unchanged proposal '
            "gains exactly 0). '= the run's decision': the proposal equals what the state run's own policy "
            '(adaptive-paired, same seed) chose there, a check of the set-up for `adaptive-paired`. '
            "Win rate: gain > 0. Fraction of oracle: mean gain / the oracle's mean gain on "
            "the agent images, Fieller 95 % interval (unbounded when the oracle's gain is not itself "
            "distinguishable from 0). Latency: the decision's wall time.",
            '',
            '### The oracle grid (the initial weights, each non-anchor weight x1 or x '
            + ', '.join(f'{m:g}' for m in args.grid)
            + ')',
            '',
            grid_table(cf['grid']),
            '',
        ]
    lines += [
        '## The policies',
        '',
        table(
            ['policy', 'what', '`agent.policy` options'],
            [[f'`{e.label}`', e.note, f'`{json.dumps(e.opt)}`' if e.opt else '-'] for e in entries],
        ),
        '',
    ]
    lines += ['## What was shortened, and why', '']
    lines += [
        '- **One prompt per boundary** (`per_image: false`): per-image prompts cost 84-450 s a boundary with '
        'the embedded model on this CPU (docs/agent.md); one prompt 3-10 s. The paper asks once per image.',
        f'- **Thoughts capped at {THOUGHTS} characters** (`max_thoughts`): under the grammar the weights are '
        'generated first, so the cap cannot change them; it only saves generation time.',
        '- llm sampling: temperature 0.6, a seed per (seed, stage) as in a run; the grammar (`structured_output: '
        'grammar`) makes every answer parse.',
    ]
    if cf:
        lines += [
            f'- **P = {args.iterations} iterations per branch** (a stage is 50): the EMA (decay 0.99) scored after P '
            f"iterations carries {100 * (1 - 0.99**args.iterations):.0f} % of the branch's own updates, so gains "
            'are small in absolute terms; common random numbers make them differences of weights only.',
            f'- **{args.val_images} of the 23 agent validation images** (a seeded subset) and held-out photos '
            f'{args.heldout_crops}x{args.heldout_crops} crops of each selection photo (flat crops left out).',
            f'- **A {len(cf["grid"])}-point oracle grid** (one step, chosen in hindsight per point on the agent '
            'images).',
            '- **Identical proposals trained once**; the current weights are always one branch.',
            "- **Stateful policies** (adaptive, random) are fed each seed's boundaries in order, one instance per "
            'seed: at a point they carry the state their earlier answers on the same history gave them, though '
            "the weights trained between boundaries were the run's own (adaptive-paired with the same seed "
            'retraces them). A fresh (1+1)-ES starts by perturbing the current weights.',
        ]
    examined = ', '.join(f'`{e.label}`' for e in entries)
    lines += [
        f'- Policies examined: {examined}.'
        + (f' Left out: {", ".join(f"`{x}`" for x in parts["left_out"])}.' if parts.get('left_out') else ''),
        '- `hybrid` joins when a policy of that type is registered (agent.policies.registry); '
        + ('it was.' if any(e.label == 'hybrid' for e in entries) else 'it was not in this run.'),
        '',
        '## Reproduce',
        '',
        '```',
        'make exam                                   # this page (states cached under experiments/ after one run)',
        'python benchmarks/exam.py --quick           # a smoke in seconds',
        'python benchmarks/exam.py --base_url http://127.0.0.1:8000/v1 --model meta-llama/Meta-Llama-3-8B-Instruct',
        '```',
        '',
        'Raw decisions and branch outcomes: experiments/exam_logs/ (not committed).',
        '',
    ]
    return '\n'.join(lines)
