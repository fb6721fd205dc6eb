"""Does adapting the loss weights beat fixed weights? The CPU policy study (benchmarks/study.md).

    make study                                # = python benchmarks/study.py: the whole study, one go
    python benchmarks/study.py --quick        # the same protocol, smaller (2 seeds, one objective)
    python benchmarks/study.py --smoke        # seconds; what tests/test_study.py runs
    python benchmarks/study.py --plan         # print the runs, train nothing

The task is the CPU demo's (options/train/demo_cpu.yml; benchmarks/policy_study/plan.py says how
each run differs). Steps: (1) the sweep of fixed weightings and every policy, all runs of a seed
from the same start with the same data order, two single-threaded processes at a time; (2) the
deployed (EMA) generator of every run scored by test.py on held-out photos; (3) the headroom
(oracle fixed vs default fixed), each policy's gain and fraction of headroom with 95 % intervals,
the stage signal's noise, the lookahead's overhead, plots. Writes --out (default
benchmarks/study_runs/): study.md (the tables), study.csv, study.json, plots/, logs/, options/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project (test.py, lossagent_*)
sys.path.insert(0, str(Path(__file__).resolve().parent))      # benchmarks/ (policy_study)

from policy_study import ROOT  # noqa: E402
from policy_study.plan import OBJECTIVES, PROFILES, START, eval_options, plan  # noqa: E402
from policy_study.report import (Study, headroom_table, heldout_values, metrics_table, overhead,  # noqa: E402
                                 plot_seed, results_table, stage_signal, write_csv)
from policy_study.runner import evaluate_all, run_all, source_hash, versions  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument('--quick', action='store_true', help='2 seeds, one objective, random and lookahead (~14 min)')
    size.add_argument('--smoke', action='store_true', help='seconds: 1 seed, 4 iterations (the test)')
    ap.add_argument('--out', type=Path, help='working folder (default benchmarks/study_runs[/quick|/smoke])')
    ap.add_argument('--seeds', type=int, nargs='+', help='override the seeds')
    ap.add_argument('--policies', nargs='+', help='override the policies (a pilot: e.g. --policies lookahead)')
    ap.add_argument('--multipliers', type=float, nargs='+', help='override the sweep (1 alone: Fixed only)')
    ap.add_argument('--jobs', type=int, default=2, help='processes at once (default 2: one per core)')
    ap.add_argument('--threads', type=int, default=1, help='torch threads per process (1: results do not depend '
                                                           'on --jobs or on other work on the machine)')
    ap.add_argument('--reuse', action='store_true', help='reuse finished runs with identical options even when the '
                                                         'code changed since (default: code and options must match)')
    ap.add_argument('--prefix', help='experiment name prefix (default study, study_quick, study_smoke)')
    ap.add_argument('--plan', action='store_true', help='print the runs and stop')
    args = ap.parse_args(argv)

    profile = 'smoke' if args.smoke else 'quick' if args.quick else 'full'
    p = dict(PROFILES[profile])
    if args.seeds:
        p['seeds'] = args.seeds
        p['diagnostic_seeds'] = [s for s in p['diagnostic_seeds'] if s in args.seeds] or args.seeds[:1]
    if args.prefix:
        p['prefix'] = args.prefix
    if args.policies:
        p['policies'] = args.policies
    if args.multipliers:
        p['multipliers'] = args.multipliers
    out = (args.out or ROOT / 'benchmarks' / 'study_runs' / ('' if profile == 'full' else profile)).resolve()
    for sub in ('options', 'logs', 'results', 'plots'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if not START.exists():
        raise SystemExit(f'study: the start {START} is missing; make it with python scripts/make_demo_start.py')
    llm = os.environ.get('LOSSAGENT_LLM_URL')
    runs = plan(p, llm)
    print(f'study ({profile}): {len(runs)} runs of {p["iters"]} iterations (a stage every {p["stage_iters"]}) from '
          f'{START.relative_to(ROOT)}: seeds {p["seeds"]}, sweep x{p["multipliers"]} of each non-anchor weight, '
          f'objectives {[OBJECTIVES[o].label for o in p["objectives"]]}, policies {p["policies"]}'
          f'{" + llm" if llm else ""}', flush=True)
    if not llm:
        print('study: llm policy skipped: no endpoint configured (set LOSSAGENT_LLM_URL=http://host:port/v1 to add it)')
    if args.plan:
        for run in runs:
            print(f'  {run.name:45s} {run.label}')
        return 0

    t0 = time.time()
    print(f'study: [1/3] training ({args.jobs} at a time)', flush=True)
    took = run_all(runs, out, args.jobs, args.threads, args.reuse)
    t_train = time.time() - t0
    print(f'study: [2/3] held-out evaluation with test.py ({t_train / 60:.1f} min so far)', flush=True)
    csvs = evaluate_all([eval_options(p, seed, runs, out / 'results') for seed in p['seeds']], out, args.jobs,
                        args.threads)
    t_eval = time.time() - t0 - t_train
    print('study: [3/3] tables and plots', flush=True)
    study = Study(p, runs, heldout_values(csvs))
    sections, findings = [], []
    for objective in p['objectives']:
        table, found = results_table(study, objective)
        sections += [headroom_table(study, objective), table]
        findings += found
    signal_md, signal = stage_signal(study)
    overhead_md, overheads = overhead(study, took)
    pngs = plot_seed(study, out / 'plots')
    wall = time.time() - t0
    text = '\n'.join(['## Results', *sections, '### Held-out metrics (mean ± std over seeds)', '', metrics_table(study),
                      '### The stage signal with fixed weights', '', signal_md,
                      '### What the lookahead costs', '', overhead_md,
                      f'Wall time {wall / 60:.1f} min (training {t_train / 60:.1f}, evaluation {t_eval / 60:.1f}), '
                      f'{os.cpu_count()} CPUs, --jobs {args.jobs} --threads {args.threads}.', ''])
    (out / 'study.md').write_text(text)
    write_csv(out / 'study.csv', study)
    command = ' '.join(['python', 'benchmarks/study.py'] + (argv if argv is not None else sys.argv[1:]))
    (out / 'study.json').write_text(json.dumps({
        'command': command, 'date_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'versions': versions(),
        'source': source_hash(), 'cpus': os.cpu_count(), 'jobs': args.jobs, 'threads': args.threads,
        'profile': p, 'llm': bool(llm), 'wall_s': round(wall, 1), 'training_s': round(t_train, 1),
        'evaluation_s': round(t_eval, 1), 'run_wall_s': took, 'findings': findings, 'stage_signal': signal,
        'overhead': overheads, 'plots': [str(p.relative_to(out)) for p in pngs]}, indent=1))
    print(text)
    print(f'study: wall time {wall / 60:.1f} min; tables in {out}/study.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
