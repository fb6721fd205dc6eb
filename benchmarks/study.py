"""Does adapting the loss weights beat fixed weights? The confirmatory CPU policy study
(benchmarks/protocol.md; results in benchmarks/study.md).

    make study                                # = python benchmarks/study.py: the whole study, one go
    python benchmarks/study.py --quick        # every kind of arm, 2 seeds, selection photos only (<= 20 min)
    python benchmarks/study.py --smoke        # seconds; what tests/test_study.py runs
    python benchmarks/study.py --plan         # print the runs and the estimated time, train nothing

The task is the CPU demo's (options/train/demo_cpu.yml; benchmarks/policy_study/plan.py says how
each run differs). Steps: (1) the grid of fixed weightings, the schedules and every policy arm, all
runs of a seed from the same start with the same data order, two single-threaded processes at a
time, then PBT's populations (pbt.py, when Ray Tune is installed); (2) the deployed (EMA) generator
of every run scored by test.py on the selection photos, and on the final-test photos in the full
study only; (3) the pre-registered comparisons (paired t, Wilcoxon, Holm), the fractions of the
oracle's headroom (Fieller), the cost axis and its plot. Writes --out (default
benchmarks/study_runs/): study.md (the tables), study.csv, study.json, plots/, logs/, options/.
Resumable: a finished run with the same options and code is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project (test.py, lossagent_*)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (policy_study)

from policy_study import ROOT  # noqa: E402
from policy_study.plan import ARMS, PROFILES, START, estimate, eval_options, pbt_runs, plan, policy_arms  # noqa: E402
from policy_study.report import (
    Study,
    comparisons,
    comparisons_table,
    cost_axis,
    grid_table,  # noqa: E402
    headroom_fractions,
    heldout_values,
    metrics_table,
    plot_cost,
    plot_seed,
    psnr_niqe_gains,
    write_csv,
)
from policy_study.runner import evaluate_all, run_all, source_hash, versions  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument('--quick', action='store_true', help='2 seeds, every kind of arm, selection photos (<= 20 min)')
    size.add_argument('--smoke', action='store_true', help='seconds: 1 seed, 4 iterations (the test)')
    ap.add_argument('--out', type=Path, help='working folder (default benchmarks/study_runs[/quick|/smoke])')
    ap.add_argument('--seeds', type=int, nargs='+', help='override every seed list (a pilot)')
    ap.add_argument('--arms', nargs='+', help=f'override the policy arms (a pilot; of {list(ARMS)})')
    ap.add_argument('--multipliers', type=float, nargs='+', help='override the grid (1 alone: Fixed only)')
    ap.add_argument('--schedules', nargs='*', help='override the schedules (none: no schedule runs)')
    ap.add_argument('--pbt-seeds', type=int, nargs='*', help='override the PBT seeds (none: no PBT)')
    ap.add_argument(
        '--selection-only',
        action='store_true',
        help='evaluate the selection photos only (every pilot: the final-test photos are for the final run)',
    )
    ap.add_argument('--jobs', type=int, default=2, help='processes at once (default 2: one per core)')
    ap.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads per process (1: results do not depend on --jobs or on other work on the machine)',
    )
    ap.add_argument(
        '--reuse',
        action='store_true',
        help='reuse finished runs with identical options even when the '
        'code changed since (default: code and options must match)',
    )
    ap.add_argument('--prefix', help='experiment name prefix (default study, study_quick, study_smoke)')
    ap.add_argument('--plan', action='store_true', help='print the runs and the estimated time, and stop')
    args = ap.parse_args(argv)

    profile = 'smoke' if args.smoke else 'quick' if args.quick else 'full'
    p = dict(PROFILES[profile])
    if args.seeds is not None:
        p.update(seeds=args.seeds, secondary_seeds=args.seeds, pbt_seeds=[s for s in p['pbt_seeds'] if s in args.seeds])
    for key in ('arms', 'multipliers', 'schedules', 'pbt_seeds', 'prefix'):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    pilot = any(getattr(args, k) is not None for k in ('seeds', 'arms', 'multipliers', 'schedules', 'pbt_seeds'))
    if (args.selection_only or pilot) and p['photo_sets'] != ['selection']:
        # protocol.md: the final-test photos are opened once, by the unmodified full study
        print(
            'study: a pilot (or --selection-only): the selection photos only; the final-test photos are for '
            'the final run'
        )
        p['photo_sets'] = ['selection']
    out = (args.out or ROOT / 'benchmarks' / 'study_runs' / ('' if profile == 'full' else profile)).resolve()
    if not START.exists():
        raise SystemExit(f'study: the start {START} is missing; make it with python scripts/make_demo_start.py')
    arms, skipped = policy_arms(p)
    for key, why in skipped.items():
        print(f'study: arm {key} skipped: {why}')
    pbt_why = None
    if p['pbt_seeds']:
        from policy_study.pbt import ray_missing

        pbt_why = ray_missing()
        if pbt_why:
            print(f'study: PBT skipped: {pbt_why}')
            p['pbt_seeds'] = []
    runs = plan(p, arms)
    pbts = pbt_runs(p)
    cost = estimate(p, runs + pbts, args.jobs)
    print(
        f'study ({profile}): {len(runs)} runs + {len(pbts)} PBT populations of {p["iters"]} iterations (a stage '
        f'every {p["stage_iters"]}) from {START.relative_to(ROOT)}: primary seeds {p["seeds"]}, secondary '
        f'{p["secondary_seeds"]}, PBT {p["pbt_seeds"]}; grid x{p["multipliers"]}; arms {arms}; schedules '
        f'{p["schedules"]}; photos {p["photo_sets"]}',
        flush=True,
    )
    print(
        f'study: estimated {cost["total_min"]:.0f} min on 2 cores ({cost["run_equivalents"]} run-equivalents: '
        f'training {cost["training_min"]:.0f} min, evaluation {cost["evaluation_min"]:.0f} min)',
        flush=True,
    )
    if skipped:
        every = estimate(p, plan(p, p['arms']) + pbts, args.jobs)
        print(
            f'study: with the skipped arms ({", ".join(skipped)}) it would be ~{every["total_min"]:.0f} min '
            '(their runs costed like the others: the LLM arms at 1.5x a Fixed run)',
            flush=True,
        )
    if args.plan:
        for run in runs + pbts:
            print(f'  {run.name:45s} {run.label}')
        return 0
    for sub in ('options', 'logs', 'results', 'plots'):
        (out / sub).mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    print(f'study: [1/3] training ({args.jobs} at a time)', flush=True)
    took = run_all(runs, out, args.jobs, args.threads, args.reuse)
    if pbts:
        from policy_study.pbt import run_pbt

        for run in pbts:
            took.update(run_pbt(run, p, out, args.jobs, args.threads, args.reuse))
    t_train = time.time() - t0
    print(f'study: [2/3] held-out evaluation with test.py ({t_train / 60:.1f} min so far)', flush=True)
    trained = [r for r in runs + pbts if r.name in took]
    seeds = sorted({r.seed for r in trained})
    csvs = evaluate_all(
        [eval_options(p, seed, trained, out / 'results') for seed in seeds], out, args.jobs, args.threads
    )
    t_eval = time.time() - t0 - t_train
    print('study: [3/3] tables and plots', flush=True)
    study = Study(p, runs + pbts, heldout_values(csvs), took)
    found = comparisons(study)
    fractions_md, fractions = headroom_fractions(study)
    cost_md, cost_rows = cost_axis(study)
    where = 'final-test' if study.headline == 'test' else 'selection'
    pngs = plot_seed(study, out / 'plots') + [plot_cost(cost_rows, out / 'plots' / 'quality_vs_compute.png', where)]
    wall = time.time() - t0
    sections = ['## Results', '', comparisons_table(study, found)]
    if fractions_md:
        sections += [f"### Fraction of the oracle's headroom recovered ({where} photos)", '', fractions_md]
    sections += [
        f'### Cost axis: {where} NIQE gain against training iterations',
        '',
        cost_md,
        '![quality vs compute](plots/quality_vs_compute.png)',
        '',
    ]
    j_md = psnr_niqe_gains(study)
    if j_md:
        sections += [f'### PSNR+NIQE (descriptive, no test; {where} photos)', '', j_md]
    grid_md = grid_table(study)
    if grid_md:
        sections += ['### The grid of fixed weightings (the oracle is chosen on the selection photos)', '', grid_md]
    for photo_set in p['photo_sets']:
        sections += [
            f'### Held-out metrics on the {photo_set} photos (mean ± sd over seeds)',
            '',
            metrics_table(study, photo_set),
        ]
    notes = [f'Arm {k} skipped: {why}.' for k, why in skipped.items()]
    notes += [f'PBT skipped: {pbt_why}.'] if pbt_why else []
    notes += [f'Missing (train.py failed twice): {", ".join(study.missing)}.'] if study.missing else []
    sections += notes + [
        '',
        f'Wall time {wall / 60:.1f} min (training {t_train / 60:.1f}, evaluation '
        f'{t_eval / 60:.1f}; estimated {cost["total_min"]:.1f}), {os.cpu_count()} CPUs, --jobs '
        f'{args.jobs} --threads {args.threads}.',
        '',
    ]
    text = '\n'.join(sections)
    (out / 'study.md').write_text(text)
    write_csv(out / 'study.csv', study)
    command = ' '.join(['python', 'benchmarks/study.py'] + (argv if argv is not None else sys.argv[1:]))
    (out / 'study.json').write_text(
        json.dumps(
            {
                'command': command,
                'date_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                'versions': versions(),
                'source': source_hash(),
                'cpus': os.cpu_count(),
                'jobs': args.jobs,
                'threads': args.threads,
                'profile': p,
                'skipped': {**skipped, **({'pbt': pbt_why} if pbt_why else {})},
                'missing': study.missing,
                'headline_photos': study.headline,
                'estimate': cost,
                'wall_s': round(wall, 1),
                'training_s': round(t_train, 1),
                'evaluation_s': round(t_eval, 1),
                'run_times': took,
                'comparisons': [
                    {
                        'key': c['key'],
                        'label': c['label'],
                        'baseline': c['baseline'],
                        'gains': c['gains'],
                        'mean': c['t'].mean,
                        'ci': list(c['t'].ci),
                        'p': c['t'].p,
                        'p_holm': c['p_holm'],
                        'wilcoxon_p': c['wilcoxon'][1],
                        'wilcoxon_p_holm': c['wilcoxon_p_holm'],
                    }
                    for c in found
                ],
                'headroom_fractions': fractions,
                'cost_axis': [{k: v for k, v in r.items() if k != 't'} for r in cost_rows],
                'plots': [str(path.relative_to(out)) for path in pngs],
            },
            indent=1,
            default=str,
        )
    )
    print(text)
    print(f'study: wall time {wall / 60:.1f} min; tables in {out}/study.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
