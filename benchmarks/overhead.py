"""What the loss agent costs in training time and memory, on this machine: `make bench`.

    python benchmarks/overhead.py [--reps 3] [--stage-iters 8] [--stages 2] [--llm-delay 0.5] [--threads 1]

Runs, in this one process and on the same prefetched batches, the demo's task
(options/train/demo_cpu.yml: SwinIR x2, L1:SSIM:GAN, NIQE/PIQE/PSNR on 10 validation crops) as
  baseline   LossAgentModel without an `agent` section: SRGANModel's math on the same networks.
             (BasicSR's own SRGANModel cannot train this pair: its VGG discriminator `.view()`s
             SwinIR's strided output, and it has no SSIM loss.)
  fixed      + the stage hook with the `fixed` policy (experts run, weights never change)
  llm sync   + the `llm` policy against tests/openai_stub_server.py, which answers every prompt
             after --llm-delay seconds (a separate process, like vLLM would be)
  llm async  the same with `agent.async: true` (the decision runs beside training)
Variants are interleaved and their order rotated per repetition, so a busy neighbour on the
machine hits them alike. Only the training iterations are timed (feed_data +
optimize_parameters + the LR update), not model building or data loading.
Writes benchmarks/results.md (or --out) and prints it.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import io
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault('HF_HUB_OFFLINE', '1')  # hub lookups otherwise hang before failing offline

import yaml  # noqa: E402

import lossagent_compat  # noqa: E402,F401  (must precede basicsr)
import lossagent_arch  # noqa: E402,F401
import lossagent_data  # noqa: E402,F401
import lossagent_losses  # noqa: E402,F401
import lossagent_models  # noqa: E402,F401
import torch  # noqa: E402
from agent.decision_log import read_records  # noqa: E402
from agent.registry import find_policy  # noqa: E402
from basicsr.data import build_dataloader, build_dataset  # noqa: E402
from basicsr.models import build_model  # noqa: E402
from basicsr.utils import get_root_logger  # noqa: E402
from basicsr.utils.options import ordered_yaml, parse_options  # noqa: E402

DEMO_OPT = ROOT / 'options' / 'train' / 'demo_cpu.yml'
PAPER_STAGE_ITERS = 5000
WARMUP_ITERS = 2  # the first iterations of a fresh model allocate; not timed as "between boundaries"
ASYNC_KEY = 'async'  # agent.async, which the lead is adding to the stage hook

VARIANTS = {  # name -> what differs from the baseline
    'baseline': 'LossAgentModel, no agent section (= SRGANModel math)',
    'fixed': 'agent, fixed policy',
    'llm sync': 'agent, llm policy, stub answers after {delay}s',
    'llm async': 'agent, llm policy, agent.async: true',
}


# ---- machine facts ------------------------------------------------------------------------
def proc_status_kb(field: str):
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM (peak RSS) to the current RSS. Freed heap is
    handed back first (malloc_trim), or the previous run's leftovers would count as this run's."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def cpu_model() -> str:
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown CPU'


def async_supported() -> bool:
    """Whether the stage hook reads `agent.async` (looked up in its source: an unknown key is ignored
    silently, so trying it would only produce a second synchronous row)."""
    return any(f"'{ASYNC_KEY}'" in p.read_text() or f'"{ASYNC_KEY}"' in p.read_text()
               for p in (ROOT / 'lossagent_models').glob('*.py'))


# ---- the runs -----------------------------------------------------------------------------
def base_options(args) -> dict:
    with open(DEMO_OPT) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    opt['num_gpu'] = 0
    opt['logger']['use_tb_logger'] = False
    opt['agent']['stage_iters'] = args.stage_iters
    if args.quick:  # the test's size: seconds, not minutes
        opt['datasets']['train'].update(batch_size_per_gpu=1)  # GT stays 128: the VGG discriminator's minimum
        opt['network_g'].update(depths=[1], embed_dim=16, num_heads=[1])
        opt['network_d'].update(num_feat=8)
        opt['agent'].update(num_images=3)
        opt['agent']['dataset'].update(images=['chelsea'], crop_size=96)
        opt['agent']['experts'] = {'PSNR': {'metric': 'psnr', 'test_y_channel': True, 'crop_border': 2}}
    return opt


def variant_options(base: dict, variant: str, llm_url: str, work: Path) -> dict:
    """Through BasicSR's own parse_options, as train.py would read the YAML."""
    opt = copy.deepcopy(base)
    opt['name'] = 'bench_' + variant.replace(' ', '_')
    if variant == 'baseline':
        opt.pop('agent')
    elif variant == 'fixed':
        opt['agent']['policy'] = {'type': 'fixed'}
    else:
        opt['agent']['policy'] = {'type': 'llm', 'base_url': llm_url, 'model': 'stub-llama-3', 'per_image': True}
        if variant == 'llm async':
            opt['agent'][ASYNC_KEY] = True
    yml = work / f"{opt['name']}.yml"
    yml.write_text(yaml.dump(opt, Dumper=ordered_yaml()[1]))  # BasicSR's dumper keeps OrderedDicts
    argv = sys.argv
    sys.argv = ['overhead.py', '-opt', str(yml)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "Disable distributed."
            parsed, _ = parse_options(str(work), is_train=True)
    finally:
        sys.argv = argv
    return parsed


def prefetch_batches(opt: dict, count: int) -> list[dict]:
    """The same batches for every variant: equal inputs, equal math, only the agent differs."""
    dataset_opt = opt['datasets']['train']
    loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False,
                              sampler=None, seed=opt['manual_seed'])
    batches = []
    while len(batches) < count:
        for batch in loader:
            batches.append(batch)
            if len(batches) == count:
                break
    return batches


def run_once(opt: dict, batches: list[dict]) -> dict:
    """Build a fresh model (same seed), train on `batches`, time each iteration."""
    peak_reset = reset_peak_rss()
    rss_before = proc_status_kb('VmRSS')
    torch.manual_seed(opt['manual_seed'])
    model = build_model(opt)
    times = []
    for it, batch in enumerate(batches, start=1):
        started = time.perf_counter()
        model.update_learning_rate(it, warmup_iter=-1)
        model.feed_data(batch)
        model.optimize_parameters(it)
        times.append(time.perf_counter() - started)
    agent = getattr(model, 'agent', None)
    if agent is not None:
        agent.close()  # does not wait for an async answer: the half stage after the last boundary lets it land
    peak = proc_status_kb('VmHWM')
    log = Path(opt['path']['experiments_root']) / 'agent' / 'decisions.jsonl'
    records = list(read_records(log)) if log.exists() else []
    del model, agent
    gc.collect()
    return {'times': times, 'records': records, 'peak_kb': peak, 'rss_before_kb': rss_before,
            'peak_reset': peak_reset}


def split_times(times: list[float], stage_iters: int) -> tuple[list[float], list[float]]:
    """(iterations between boundaries, iterations that ended with a deciding boundary).
    Iteration 1 also scores stage 0 (no decision); it is warm-up and in neither list."""
    between, boundary = [], []
    for it, t in enumerate(times, start=1):
        if it % stage_iters == 0:
            boundary.append(t)
        elif it > WARMUP_ITERS:
            between.append(t)
    return between, boundary


def start_stub(delay: float, work: Path) -> tuple[subprocess.Popen, str]:
    port_file = work / 'stub.port'
    proc = subprocess.Popen([sys.executable, str(ROOT / 'tests' / 'openai_stub_server.py'), '--port', '0',
                             '--delay', str(delay), '--port-file', str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError('the OpenAI stub server did not start')
        time.sleep(0.05)
    return proc, f'http://127.0.0.1:{port_file.read_text().strip()}/v1'


# ---- summary ------------------------------------------------------------------------------
def per_iteration(runs: list[dict], stage_iters: int) -> list[float]:
    """Each run's median iteration between boundaries, in repetition order."""
    return [statistics.median(split_times(r['times'], stage_iters)[0]) for r in runs]


def summarize(runs: list[dict], baseline_runs: list[dict], stage_iters: int) -> dict:
    per_iter = per_iteration(runs, stage_iters)
    # Paired within a repetition (its variants ran back to back), so load that drifts over minutes
    # on a shared machine cancels; comparing medians of different repetitions would not.
    ratios = [t / b for t, b in zip(per_iter, per_iteration(baseline_runs, stage_iters))]
    blocking, evals, latency, lag = [], [], [], []
    for r, t_iter in zip(runs, per_iter):
        blocking += [t - t_iter for t in split_times(r['times'], stage_iters)[1]]
        deciding = [rec for rec in r['records'] if rec.get('stage', 0) > 0]
        evals += [rec['eval_s'] for rec in deciding if isinstance(rec.get('eval_s'), (int, float))]
        lag += [rec['applied_iteration'] - rec['iteration'] for rec in deciding
                if isinstance(rec.get('applied_iteration'), int)]
        latency += [rec['latency_s'] for rec in deciding if isinstance(rec.get('latency_s'), (int, float))]
    fallbacks = sum(1 for r in runs for rec in r['records'] if rec.get('fallback'))
    peaks = [(r['peak_kb'] - r['rss_before_kb']) / 1024 for r in runs if r['peak_kb'] and r['rss_before_kb']]
    return {'iter_min': min(per_iter), 'iter_med': statistics.median(per_iter),
            'block_min': min(blocking) if blocking else None,
            'block_med': statistics.median(blocking) if blocking else None,
            'eval_med': statistics.median(evals) if evals else None,
            'lag_med': statistics.median(lag) if lag else None,
            'latency_med': statistics.median(latency) if latency else None,
            'fallbacks': fallbacks, 'boundaries': len(blocking),
            'peak_delta_mb': statistics.median(peaks) if peaks else None,
            'peak_abs_mb': statistics.median(r['peak_kb'] for r in runs) / 1024 if runs[0]['peak_kb'] else None,
            'ratio_med': statistics.median(ratios), 'ratio_min': min(ratios), 'ratio_max': max(ratios),
            'peak_reset': all(r['peak_reset'] for r in runs)}


def fmt(value, spec='.3f', unit='') -> str:
    return 'n/a' if value is None else f'{value:{spec}}{unit}'


def results_table(stats: dict, skipped: dict, delay: float) -> str:
    rows = ['| variant | what | s/iter between boundaries, min / median | s/iter ratio vs baseline, paired: median (min..max) '
            '| boundary blocking s, min / median | eval_s in log, median | policy latency_s, median '
            '| applied at boundary + iters, median '
            f'| boundary share of a {PAPER_STAGE_ITERS}-iter stage (extrapolated) '
            f'| training-time overhead at {PAPER_STAGE_ITERS}-iter stages (extrapolated) | peak RSS MB, median (growth during the run) |',
            '|' + '---|' * 11]
    for name, what in VARIANTS.items():
        what = what.format(delay=delay)
        if name in skipped:
            rows.append(f'| {name} | {what} | {skipped[name]} |' + ' |' * 8)
            continue
        s = stats[name]
        ratio = f"{s['ratio_med']:.3f} ({s['ratio_min']:.3f}..{s['ratio_max']:.3f})"
        block = s['block_med'] if s['block_med'] is not None else 0.0
        stage_s = PAPER_STAGE_ITERS * s['iter_med']
        share = block / (stage_s + block) if name != 'baseline' else None
        overhead = s['ratio_med'] * (stage_s + block) / stage_s - 1 if name != 'baseline' else None
        note = f" ({s['fallbacks']} fallbacks)" if s['fallbacks'] else ''
        rows.append(f"| {name} | {what}{note} | {fmt(s['iter_min'], '.4f')} / {fmt(s['iter_med'], '.4f')} | {ratio} "
                    f"| {fmt(s['block_min'], '.3f')} / {fmt(s['block_med'], '.3f')} | {fmt(s['eval_med'])} "
                    f"| {fmt(s['latency_med'])} | {fmt(s['lag_med'], 'g')} | {fmt(share and 100 * share, '.2f', '%')} "
                    f"| {fmt(overhead and 100 * overhead, '+.2f', '%')} | {fmt(s['peak_abs_mb'], '.0f')} "
                    f"({fmt(s['peak_delta_mb'], '+.0f')}) |")
    return '\n'.join(rows)


def report(stats, skipped, args, elapsed, loads, command) -> str:
    reps = args.reps
    peak_method = ('VmHWM (peak resident set) from /proc/self/status, reset before each run via '
                   '/proc/self/clear_refs after gc + malloc_trim; growth = peak minus the RSS before the model '
                   'is built' if all(s['peak_reset'] for s in stats.values())
                   else 'VmHWM (could not be reset per run: process-wide peak so far)')
    return f"""# Loss-agent overhead on this machine

`{command}` ({time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed:.0f} s)

{results_table(stats, skipped, args.llm_delay)}

- Machine: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} thread(s)
  (--threads; with 2 OpenMP threads on this shared 2-core machine iterations ran 5-15x slower and erratic),
  Python {sys.version.split()[0]}. Load average (1 min) {loads[0]:.2f} at start, {loads[1]:.2f} at the end:
  the machine is shared, so absolute times are noisy; the paired ratios are what to read. A ratio is
  taken within each repetition (its variants ran back to back, so slow minutes hit them alike); its
  min..max over repetitions shows the noise: differences inside that range are not measured effects.
- Task: {DEMO_OPT.relative_to(ROOT)}{' shrunk (--quick)' if args.quick else ''}, a stage every {args.stage_iters}
  iterations, {args.stages} deciding boundaries then {args.stage_iters // 2} more iterations per run,
  {reps} repetitions per variant, interleaved with the order rotated each repetition; all runs train on the
  same prefetched batches from a fresh model with the same seed. Min and median are over repetitions
  (s/iter: each run's median iteration between boundaries) or over all deciding boundaries.
- *s/iter between boundaries*: feed_data + optimize_parameters + LR update, not iteration 1 to {WARMUP_ITERS}
  (warm-up; iteration 1 also scores stage 0) and not the iterations that end a stage.
- *boundary blocking*: the time the training loop stood still at a boundary = that iteration's time minus
  the run's median iteration (baseline: the same iterations, which have no boundary: the noise floor).
  From decisions.jsonl: *eval_s* = restoring the validation images + the experts (on the training thread,
  in both modes); *policy latency_s* = the policy's answer (in the agent's worker thread: training waits
  for it when synchronous, not when async); *applied at boundary + iters* = from which iteration after the
  boundary the new weights were used (1 when synchronous; async: the iterations trained meanwhile, +1).
- *share of a {PAPER_STAGE_ITERS}-iter stage* and *overhead at {PAPER_STAGE_ITERS}-iter stages* are
  EXTRAPOLATED, not measured: blocking / ({PAPER_STAGE_ITERS} x s/iter + blocking), and
  ratio x ({PAPER_STAGE_ITERS} x s/iter + blocking) / ({PAPER_STAGE_ITERS} x s/iter) - 1 (s/iter: the
  variant's median; ratio: the paired median, so its noise carries over). The paper's
  Table 12 reports +10.8% (CISR) .. +18.0% (RISR), nearly all of it LLM reasoning (CISR: 58 min over 20
  stages, ~174 s per boundary, against ~28 min of training per stage); here the LLM is a stub answering
  after {args.llm_delay} s, so the llm rows show the agent's own machinery, not a real LLM's latency.
- Peak memory: {peak_method}. It covers building the model, the experts and the validation images.
- Baseline: BasicSR's own SRGANModel cannot train SwinIR with its VGGStyleDiscriminator (`.view()` on a
  strided output) and has no SSIM loss, so the baseline is LossAgentModel without an `agent` section,
  which computes SRGANModel's losses and updates on the same networks.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reps', type=int, default=3, help='repetitions of each variant (interleaved)')
    parser.add_argument('--stage-iters', type=int, default=8, help='iterations per stage in the timed runs')
    parser.add_argument('--stages', type=int, default=2, help='deciding boundaries per run')
    parser.add_argument('--llm-delay', type=float, default=0.5, help='seconds the stub LLM waits before answering')
    parser.add_argument('--out', type=Path, default=ROOT / 'benchmarks' / 'results.md')
    parser.add_argument('--variants', nargs='+', choices=list(VARIANTS), default=list(VARIANTS),
                        help='which rows to run (baseline always runs)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (1: on a shared 2-core machine, 2 OpenMP threads measured 5-15x slower)')
    parser.add_argument('--quick', action='store_true', help='a tiny network and one expert (for the test)')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: blocks (stop the stub server)
    torch.set_num_threads(args.threads)
    command = 'python benchmarks/overhead.py' + (' ' + ' '.join(argv if argv is not None else sys.argv[1:])).rstrip()
    get_root_logger(log_level=logging.WARNING)  # the agent's warnings only; no per-stage INFO lines
    started, load_start = time.perf_counter(), os.getloadavg()[0]

    skipped = {}
    if find_policy('llm') is None:
        skipped['llm sync'] = skipped['llm async'] = 'n/a (no llm policy registered on this branch)'
    elif not async_supported():
        skipped['llm async'] = f'n/a (agent.{ASYNC_KEY} not available)'
    for name in VARIANTS:
        if name != 'baseline' and name not in args.variants:
            skipped.setdefault(name, 'not run (--variants)')
    variants = [v for v in VARIANTS if v not in skipped]

    with tempfile.TemporaryDirectory(prefix='lossagent-bench-') as tmp:
        work = Path(tmp)
        base = base_options(args)
        iters = args.stages * args.stage_iters + args.stage_iters // 2
        stub, url = start_stub(args.llm_delay, work) if 'llm sync' in variants else (None, '')
        try:
            batches = prefetch_batches(variant_options(base, 'baseline', url, work), iters)
            # Untimed: the process's first model pays one-off costs (lazy kernel set-up, allocator
            # growth, pyiqa imports) that would otherwise land on whichever variant runs first.
            run_once(variant_options(base, variants[-1], url, work), batches[:WARMUP_ITERS + 1])
            runs = {v: [] for v in variants}
            for rep in range(args.reps):
                order = variants[rep % len(variants):] + variants[:rep % len(variants)]
                for variant in order:
                    opt = variant_options(base, variant, url, work)
                    result = run_once(opt, batches)
                    runs[variant].append(result)
                    between, _ = split_times(result['times'], args.stage_iters)
                    print(f'rep {rep + 1}/{args.reps} {variant:10s} {statistics.median(between):.4f} s/iter, '
                          f'{sum(result["times"]):.1f} s total', flush=True)
        finally:
            if stub is not None:
                stub.terminate()
                stub.wait(timeout=10)
    stats = {v: summarize(runs[v], runs['baseline'], args.stage_iters) for v in variants}
    text = report(stats, skipped, args, time.perf_counter() - started, (load_start, os.getloadavg()[0]), command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print('\n' + text)
    print(f'written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
