"""From the timings of benchmarks/overhead.py to numbers and benchmarks/results.md (no torch here).

A *run* is one model trained for one repetition: {'times': seconds per iteration (1-based),
'records': its decisions.jsonl}. Runs of all variants in one repetition trained in lockstep
(iteration i of every variant back to back), so iteration i of a variant and iteration i of the
baseline saw the same machine load: every comparison below is such a pair.
"""

from __future__ import annotations

import math
import statistics

PAPER_STAGE_ITERS = 5000
BLOCK = 10  # consecutive paired iterations per batch mean (neighbours share the machine's load)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
WARMUP_ITERS = 2  # iteration 1 also scores stage 0; the first iterations of a fresh model allocate


def is_boundary(it: int, stage_iters: int) -> bool:
    return it % stage_iters == 0


def between_iterations(n: int, stage_iters: int, busy: frozenset = frozenset({0})) -> list[int]:
    """1-based iterations that are neither warm-up nor one where the agent works: `busy` holds the
    offsets into a stage of that work (0: the boundary; an earlier snapshot; a lookahead window's end)."""
    return [it for it in range(WARMUP_ITERS + 1, n + 1) if it % stage_iters not in busy]


def williams_rows(names: list[str]) -> list[list[str]]:
    """A Williams design: orders of `names` in which every name holds every place, and directly
    follows every other name, equally often (n rows for an even n, 2n for an odd one)."""
    n = len(names)
    first = [0] + [(k + 1) // 2 if k % 2 else n - k // 2 for k in range(1, n)]
    rows = [[names[(i + j) % n] for j in first] for i in range(n)]
    return rows if n % 2 == 0 else rows + [row[::-1] for row in rows]


def lockstep_orders(names: list[str], n: int, stage_iters: int, busy: frozenset) -> list[list[str]]:
    """The lockstep order at iterations 1..n: the next row of `williams_rows` on every *compared*
    iteration (one in `between_iterations`), so the balance holds over the iterations that are
    compared; the busy ones, which no ratio uses, keep the row of the compared one before them."""
    rows, compared, turn, orders = williams_rows(names), set(between_iterations(n, stage_iters, busy)), 0, []
    for it in range(1, n + 1):
        orders.append(rows[turn % len(rows)])
        turn += it in compared
    return orders


def paired_between(run: dict, base: dict, stage_iters: int) -> list[int]:
    """The iterations where neither the variant nor the baseline does agent work."""
    busy = frozenset(run.get('busy', {0})) | frozenset(base.get('busy', {0}))
    return between_iterations(len(run['times']), stage_iters, busy)


def ratio_ci(runs: list[dict], baseline_runs: list[dict], stage_iters: int) -> tuple[float, float, float]:
    """(geometric-mean ratio, 95 % low, high) of variant / baseline over the paired iterations between
    boundaries; the interval from batch means of BLOCK consecutive log-ratios (batch-means method:
    the blocks, not the correlated iterations, are the independent samples)."""
    blocks = []
    for run, base in zip(runs, baseline_runs):
        logs = [math.log(run['times'][it - 1] / base['times'][it - 1]) for it in paired_between(run, base, stage_iters)]
        blocks += [statistics.fmean(logs[i : i + BLOCK]) for i in range(0, len(logs) - BLOCK + 1, BLOCK)]
    if len(blocks) < 2:
        return math.nan, math.nan, math.nan
    m = statistics.fmean(blocks)
    half = T975.get(len(blocks) - 1, 1.96) * statistics.stdev(blocks) / math.sqrt(len(blocks))
    return math.exp(m), math.exp(m - half), math.exp(m + half)


def extra_training(runs: list[dict], reference_runs: list[dict], full_iters: int) -> float:
    """Measured extra time over whole stages (boundaries and probes included) against `reference_runs`."""
    spent = sum(sum(r['times'][:full_iters]) for r in runs)
    return spent / sum(sum(r['times'][:full_iters]) for r in reference_runs) - 1


def median_or_none(values):
    return statistics.median(values) if values else None


def summarize(runs: list[dict], baseline_runs: list[dict], stage_iters: int) -> dict:
    """One variant over its repetitions; runs[k] and baseline_runs[k] trained in lockstep."""
    per_iter, ratios, blocking = [], [], []
    evals, latency, lag, fallbacks = [], [], [], 0
    tokens = {'prompt': [], 'evaluated': [], 'generated': []}  # in-process llama.cpp only
    for run, base in zip(runs, baseline_runs):
        t, b = run['times'], base['times']
        between = paired_between(run, base, stage_iters)
        per_iter.append(statistics.median(t[it - 1] for it in between))
        ratios.append(statistics.median(t[it - 1] / b[it - 1] for it in between))
        blocking += [t[it - 1] - b[it - 1] for it in range(1, len(t) + 1) if is_boundary(it, stage_iters)]
        deciding = [r for r in run['records'] if r.stage > 0]
        evals += [r.eval_s for r in deciding if r.eval_s is not None]
        latency += [r.latency_s for r in deciding if r.latency_s is not None]
        lag += [r.applied_iteration - r.iteration for r in deciding if r.applied_iteration is not None]
        fallbacks += sum(1 for r in run['records'] if r.fallback)
        for r in deciding:
            for key, value in (r.info.get('tokens') or {}).items():
                tokens.setdefault(key, []).append(value)
    geo, low, high = ratio_ci(runs, baseline_runs, stage_iters)
    return {
        'ratio_geo': geo,
        'ratio_low': low,
        'ratio_high': high,
        'iter_min': min(per_iter),
        'iter_med': statistics.median(per_iter),
        'ratio_med': statistics.median(ratios),
        'ratio_min': min(ratios),
        'ratio_max': max(ratios),
        'block_min': min(blocking) if blocking else None,
        'block_med': median_or_none(blocking),
        'eval_med': median_or_none(evals),
        'latency_med': median_or_none(latency),
        'lag_med': median_or_none(lag),
        'fallbacks': fallbacks,
        'tokens': {key: median_or_none(values) for key, values in tokens.items()},
    }


def extrapolate(s: dict) -> tuple[float, float]:
    """(boundary share of a paper-length stage, training-time overhead), from the measured pieces."""
    stage_s = PAPER_STAGE_ITERS * s['iter_med']
    block = max(0.0, s['block_med'] or 0.0)
    return block / (stage_s + block), s['ratio_med'] * (stage_s + block) / stage_s - 1


def fmt(value, spec='.3f', unit='') -> str:
    return 'n/a' if value is None else f'{value:{spec}}{unit}'


def results_table(stats: dict, skipped: dict, variants: dict) -> str:
    rows = [
        '| variant | what | s/iter between boundaries, min / median | s/iter ratio vs baseline, paired: '
        'median (min..max) | ratio, geometric mean [95 % CI] | boundary blocking s (paired), min / median '
        '| eval_s (log), median '
        '| policy latency_s (log), median | applied at boundary + iters, median '
        f'| boundary share of a {PAPER_STAGE_ITERS}-iter stage (extrapolated) '
        f'| training-time overhead at {PAPER_STAGE_ITERS}-iter stages (extrapolated) '
        '| peak RSS MB (growth while building + training) |',
        '|' + '---|' * 12,
    ]
    for name, what in variants.items():
        if name in skipped:
            rows.append(f'| {name} | {what} | {skipped[name]} |' + ' |' * 9)
            continue
        s = stats[name]
        ratio = f'{s["ratio_med"]:.3f} ({s["ratio_min"]:.3f}..{s["ratio_max"]:.3f})'
        geo = (
            f'{s["ratio_geo"]:.4f} [{s["ratio_low"]:.4f}, {s["ratio_high"]:.4f}]'
            if math.isfinite(s['ratio_geo'])
            else 'n/a'
        )
        if s.get('extra_measured') is not None:
            what += (
                f' (measured extra training over fixed: {100 * s["extra_measured"]:+.1f}%, predicted '
                f'(K-1)*P/stage_iters {100 * s["extra_predicted"]:.1f}%)'
            )
        if name == 'baseline':
            block = share = overhead = 'reference'
        else:
            share_v, overhead_v = extrapolate(s)
            block = f'{fmt(s["block_min"])} / {fmt(s["block_med"])}'
            share, overhead = f'{100 * share_v:.2f}%', f'{100 * overhead_v:+.2f}%'
        t = s.get('tokens') or {}
        if t.get('prompt'):
            what += (
                f' (tokens per boundary, median: {t["prompt"]:.0f} in the prompts = evaluated without KV-cache '
                f'reuse; {t["evaluated"]:.0f} evaluated with reuse ({t["prompt"] / max(1, t["evaluated"]):.1f}x '
                f'fewer); {t["generated"]:.0f} generated)'
            )
        note = f' ({s["fallbacks"]} fallbacks)' if s['fallbacks'] else ''
        memory = f'{fmt(s.get("peak_mb"), ".0f")} ({fmt(s.get("growth_mb"), "+.0f")})'
        rows.append(
            f'| {name} | {what}{note} | {s["iter_min"]:.4f} / {s["iter_med"]:.4f} | {ratio} | {geo} | {block} '
            f'| {fmt(s["eval_med"])} | {fmt(s["latency_med"])} | {fmt(s["lag_med"], "g")} '
            f'| {share} | {overhead} | {memory} |'
        )
    return '\n'.join(rows)


def report(table: str, facts: dict) -> str:
    """facts: command, date, elapsed, machine, threads, load, task, reps, stage_iters, stages, tail,
    delay, peak_method."""
    f = facts
    return f"""# Loss-agent overhead on this machine

`{f['command']}` ({f['date']}, {f['elapsed']:.0f} s)

{table}

- Machine: {f['machine']}; torch with {f['threads']} thread(s) (`--threads`: with 2 OpenMP threads on this
  shared 2-core machine iterations ran 5-15x slower and erratic). Load average (1 min) {f['load'][0]:.2f} at
  start, {f['load'][1]:.2f} at the end: the machine was shared with other work, so absolute times are noisy
  and only the paired numbers are meaningful.
- Task: {f['task']}, a stage every {f['stage_iters']} iterations: {f['stages']} deciding boundaries, then
  {f['tail']} more iterations, per run; {f['reps']} repetitions. In a repetition every variant is a fresh model
  (same seed, same prefetched batches) and they train *in lockstep*: iteration i of each variant back to
  back, in the orders of a Williams design (over the compared iterations each variant holds each
  place, and follows each other variant, equally often; the build order is the repetition's row), so a
  load spike hits them alike. *baseline B* is a second,
  identical baseline (A/A): its ratio is the bench's own bias, and the other rows' intervals mean
  something only when its interval holds 1. Min/median/min..max are over the
  repetitions, or over all deciding boundaries.
- *s/iter between boundaries*: feed_data + optimize_parameters + LR update, the run's median over the
  iterations that are not warm-up (1..{WARMUP_ITERS}; iteration 1 also scores stage 0) and carry no agent
  work (not a boundary, an earlier snapshot or a lookahead window's end: their costs are the columns to the
  right).
  *Ratio*: median over those iterations of variant / baseline at the same iteration, per repetition; the
  *geometric mean* pools all repetitions' paired log-ratios, its 95 % interval from batch means of {BLOCK}
  consecutive iterations (t-interval over the blocks; neighbouring iterations share the machine's load).
- *lookahead*: each window's end replays the other candidates, so its cost is concentrated there; the
  *measured extra training* is its time over whole stages against `fixed` (both score at boundaries),
  next to the predicted (K-1)*P/stage_iters.
- *Boundary blocking*: how long training stood still at a boundary = the boundary iteration's time minus the
  baseline's same iteration. From decisions.jsonl: *eval_s* = restoring the validation images + experts (on
  the training thread in both modes); *policy latency_s* = the policy's answer (in the agent's worker thread:
  waited for when synchronous, not when async); *applied at boundary + iters* = the first iteration with the
  new weights (1 when synchronous). In lockstep, other variants' iterations run while an async answer is
  awaited, so that lag is shorter here than alone (alone: about latency / s/iter iterations).
- *Share of a {PAPER_STAGE_ITERS}-iter stage* and *overhead at {PAPER_STAGE_ITERS}-iter stages* are
  EXTRAPOLATED, not measured: blocking / ({PAPER_STAGE_ITERS} x s/iter + blocking), and
  ratio x ({PAPER_STAGE_ITERS} x s/iter + blocking) / ({PAPER_STAGE_ITERS} x s/iter) - 1, with the variant's
  median s/iter and the median ratio (whose noise carries over). The paper's Table 12: +10.8% (CISR) ..
  +18.0% (RISR), nearly all LLM reasoning (CISR: 58 min over 20 stages, ~174 s per boundary, against
  ~28 min of training per stage). In the *llm sync/async* rows the LLM is a stub answering after
  {f['delay']} s: they show the agent's own machinery; with a real server add (its latency - {f['delay']} s)
  per synchronous boundary. The *llm embedded* row is a real model (SmolLM2-135M-Instruct, llama.cpp in
  this process, one thread), so its blocking is a real decision's, and its tokens are counted by llama.cpp:
  a prompt per validation image, the shared start of the prompts evaluated once and reused from the KV
  cache (without reuse every prompt token would be evaluated).
- Peak memory: {f['peak_method']}.
- Baseline: BasicSR's own SRGANModel cannot train SwinIR with its VGGStyleDiscriminator (`.view()` on a
  strided output) and has no SSIM loss, so the baseline is LossAgentModel without an `agent` section,
  which computes SRGANModel's losses and updates on the same networks.
"""
