"""Does adapting the loss weights toward an objective beat fixed and random weights? (CPU study)

    make study                                # = python benchmarks/study.py
    python benchmarks/study.py --smoke        # seconds; what tests/test_study.py runs
    python benchmarks/study.py --estimate     # print the plan and its runtime estimate, train nothing

The embedded task is the CPU demo's (options/train/demo_cpu.yml): a tiny SwinIR x2 on photos that
ship in scikit-image, loss repository L1 : SSIM : GAN = 1 : 0.5 : 0.01, experts NIQE and PSNR.

Protocol
1. One short L1 pre-training (lr 1e-3, cosine decay), trained once and reused: every run below
   fine-tunes from it, as the paper fine-tunes from a PSNR model.
2. For every seed: `fixed` and `random` (they never look at the objective, so one run each serves
   every objective), and per objective `adaptive` (and `llm` when LOSSAGENT_LLM_URL is set).
   All runs of one seed share `manual_seed` (same data order, same discriminator init, same
   per-iteration RNG) and the same pre-trained start; they differ only in the weights the policy
   sets at the stage boundaries.
   Objectives: `niqe` (NIQE alone) and `psnr_niqe` (PSNR + NIQE, equal weights on their relative
   gains, the way agent/objective.py combines experts).
3. The agent scores on crops of chelsea / stereo_motorcycle / retina (as the demo). The final
   checkpoints are evaluated by test.py on held-out photos (coffee, moon, gravel, clock,
   colorwheel) that neither training nor the agent ever saw: NIQE, PSNR, SSIM per seed, then
   mean ± std over seeds, the held-out objective value of each method, and paired differences
   against `fixed` (same seed).

Outputs: experiments/study_* (training runs) and --out (default benchmarks/study_runs/: option
files, per-seed test.py tables, the aggregated study_table.md/.csv, weight-curve PNGs, report).
"""
from __future__ import annotations
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project (test.py, lossagent_*)
sys.path.insert(0, str(Path(__file__).resolve().parent))      # benchmarks/ (policy_study)

from policy_study import PY, ROOT  # noqa: E402
from policy_study.plan import (ADAPTIVE_STRATEGIES, BICUBIC, PRETRAINED, PROFILES, estimate, eval_options,  # noqa: E402
                               plan, train_options)
from policy_study.report import (add_row, aggregate, bicubic_scores, paired, plot_run, read_seed_tables,  # noqa: E402
                                 render, write_csv)
from agent.plot import plot_compare  # noqa: E402
from policy_study.runner import (evaluate, finish_training, run_all, source_hash, start_training,  # noqa: E402
                                 versions)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--smoke', action='store_true', help='tiny end-to-end check (1 seed, few iterations, 1 objective)')
    ap.add_argument('--out', default=None, help='working folder (default benchmarks/study_runs, '
                                                'benchmarks/study_runs/smoke with --smoke)')
    ap.add_argument('--seeds', type=int, nargs='+', help='override the seeds')
    ap.add_argument('--iters', type=int, help='override the fine-tuning iterations per run')
    ap.add_argument('--jobs', type=int, default=2, help='training processes at once (default 2: one per core)')
    ap.add_argument('--threads', type=int, default=1,
                    help='torch threads per process (default 1: results do not depend on --jobs, and a shared '
                         'machine does not oversubscribe; 2 threads were 5-10x slower with other jobs running)')
    ap.add_argument('--estimate', action='store_true', help='print the plan and the runtime estimate only')
    ap.add_argument('--adaptive', nargs='+', choices=sorted(ADAPTIVE_STRATEGIES), default=['es', 'paired'],
                    help='strategies of the adaptive policy to run (default: es paired; agent/adaptive_policy.py)')
    ap.add_argument('--reuse', action='store_true',
                    help='reuse finished runs with identical options even when the code changed since '
                         '(default: only when the code hash matches too)')
    ap.add_argument('--prefix', default=None, help='experiment name prefix (default study, study_smoke with --smoke)')
    ap.add_argument('--plots', default=None, help='also copy the seed-0 weight-curve PNGs into this folder')
    args = ap.parse_args(argv)

    p = dict(PROFILES['smoke' if args.smoke else 'full'])
    if args.seeds:
        p['seeds'] = args.seeds
    if args.iters:
        p['iters'] = args.iters
    if args.prefix:
        p['prefix'] = args.prefix
    out = Path(args.out or (ROOT / 'benchmarks' / 'study_runs' / ('smoke' if args.smoke else ''))).resolve()
    for sub in ('options', 'logs', 'results', 'plots'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    llm = bool(os.environ.get('LOSSAGENT_LLM_URL'))
    pre_name = f"{p['prefix']}_pretrain"
    pretrained = str(ROOT / 'experiments' / pre_name / 'models' / 'net_g_latest.pth')
    runs = plan(p, llm, pretrained, args.adaptive)
    per_seed = len(runs) // len(p['seeds'])
    est, per_run = estimate(p, len(runs), per_seed, args.jobs)

    print(f'study: {"SMOKE " if args.smoke else ""}{len(runs)} fine-tuning runs = {len(p["seeds"])} seed(s) x '
          f'[fixed, random (shared by all objectives)] + adaptive{" + llm" if llm else ""} x objectives '
          f'{p["objectives"]} (adaptive strategies: {" ".join(args.adaptive)}); {p["iters"]} iterations each, '
          f'a stage every {p["stage_iters"]}; '
          f'from one L1 pre-training of {p["pretrain_iters"]} iterations.')
    if not llm:
        print('study: llm policy skipped: no endpoint configured (set LOSSAGENT_LLM_URL=http://host:port/v1 to add it)')
    print(f'study: estimated wall time {est / 60:.1f} min with --jobs {args.jobs} --threads {args.threads} '
          f'(from per-run costs measured on a shared 2-core CPU; this machine has {os.cpu_count()} cores; '
          f'longer while other jobs use them)', flush=True)
    if args.estimate:
        return 0

    t0 = time.time()
    print(f'study: [1/4] L1 pre-training ({p["pretrain_iters"]} iterations, lr 1e-3 cosine)', flush=True)
    pre_opt = train_options(pre_name, p, 0, None, None)
    finish_training(pre_name, pre_opt, start_training(pre_name, pre_opt, out, args.threads, args.reuse), out)
    t_pre = time.time() - t0
    print(f'  pre-training: {t_pre:.0f}s', flush=True)

    print(f'study: [2/4] fine-tuning runs ({args.jobs} at a time)', flush=True)
    run_all(runs, out, args.jobs, args.threads, t0, args.reuse)
    t_train = time.time() - t0 - t_pre

    print('study: [3/4] held-out evaluation with test.py', flush=True)
    csvs = [evaluate(eval_options(p, seed, runs, pretrained, out / 'results'), out, args.threads)
            for seed in p['seeds']]
    t_eval = time.time() - t0 - t_pre - t_train

    print('study: [4/4] tables and plots', flush=True)
    tables = read_seed_tables(csvs)
    bicubic = bicubic_scores(eval_options(p, p['seeds'][0], [], pretrained, out / 'results'))
    for table in tables:
        add_row(table, BICUBIC, bicubic, PRETRAINED)
    blocks, directions, labels, columns = aggregate(tables, p['objectives'])
    decimals = {'niqe': 2, 'psnr': 2, 'ssim': 4, 'objective': 2}
    n = len(p['seeds'])
    table_md = render(blocks, directions, labels, columns, decimals,
                      f'Held-out photos (never seen by training or the agent), x2, {n} seed(s), '
                      f'adaptive strategies {", ".join(args.adaptive)}', n)
    paired_md = paired(blocks, columns, p['objectives'], n)
    (out / 'study_table.md').write_text(table_md + '\n' + paired_md)
    write_csv(out / 'study_table.csv', blocks, columns)
    first = [run for run in runs if run.seed == p['seeds'][0]]
    pngs = [plot_run(run, out / 'plots' / f'{run.name}.png') for run in first]
    pngs += plot_compare([run.root for run in first], out / 'plots', log_y='on')  # one seed, all policies
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        for png in pngs:
            shutil.copy(png, Path(args.plots) / Path(png).name)
    wall = time.time() - t0
    report = {
        'command': ' '.join([Path(PY).name, 'benchmarks/study.py'] + (argv if argv is not None else sys.argv[1:])),
        'date_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'versions': versions(),
        'adaptive': args.adaptive, 'reuse': args.reuse, 'source': source_hash(), 'cpus': os.cpu_count(),
        'jobs': args.jobs, 'threads': args.threads, 'llm': llm, 'profile': p,
        'wall_s': round(wall, 1), 'pretrain_s': round(t_pre, 1), 'training_s': round(t_train, 1),
        'eval_s': round(t_eval, 1), 'estimate_s': round(est, 1), 'runs': [r.name for r in runs],
    }
    (out / 'study_report.json').write_text(json.dumps(report, indent=1))
    print(table_md)
    print(paired_md)
    print(f'study: wall time {wall / 60:.1f} min (pre-training {t_pre:.0f}s, fine-tuning {t_train:.0f}s, '
          f'evaluation {t_eval:.0f}s; estimate was {est / 60:.1f} min); tables in {out}/study_table.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())


if __name__ == '__main__':
    sys.exit(main())
