"""Benchmark trained networks, BasicSR-style:

    python test.py -opt options/test/CISR_benchmark.yml [--force_yml val:save_images=true]
    torchrun --nproc_per_node=8 test.py -opt options/test/CISR_benchmark.yml --launcher pytorch
    python test.py -opt my_basicsr_test.yml      # a plain BasicSR test option file

Two schemas. Ours (options/test/README.md: methods x datasets x metrics) writes the paper's table to
results/<name>/<name>.md and .csv and, with val.save_images, results/<name>/visualization/<method>/<dataset>/.
A BasicSR test option file (`datasets: test_1: ...`, `val: metrics`, `save_img`; no `methods`) runs
BasicSR's own test pipeline, with our architectures, datasets and models registered. Both write a log
file results/<name>/test_<name>_<time>.log; with a launcher, each rank evaluates its share of the methods.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lossagent_compat  # noqa: F401,E402  (before basicsr)
from lossagent_errors import UserError  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='path to the test option YAML')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--force_yml', nargs='+', default=None, help='key:subkey=value overrides (BasicSR)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_basicsr_test(args) -> None:
    """BasicSR's test_pipeline, reading its own command line, after our registrations and fixes."""
    import lossagent_arch  # noqa: F401  (registers our architectures)
    import lossagent_data  # noqa: F401
    import lossagent_losses  # noqa: F401
    import lossagent_models  # noqa: F401
    import lossagent_eval.val_metrics  # noqa: F401  (calculate_iqa)
    from basicsr.test import test_pipeline
    from lossagent_runtime import basicsr_fixes

    basicsr_fixes.install()
    argv = [sys.argv[0], '-opt', args.opt, '--launcher', args.launcher]
    if args.force_yml:
        argv += ['--force_yml', *args.force_yml]
    saved, sys.argv = sys.argv, argv
    try:
        test_pipeline(ROOT)
    finally:
        sys.argv = saved


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        from lossagent_eval.benchmark_options import apply_force_yml, is_basicsr_test_file
        from lossagent_runtime.option_file import load_yaml

        opt = apply_force_yml(load_yaml(args.opt), args.force_yml, args.opt)
        if is_basicsr_test_file(opt):
            run_basicsr_test(args)
            print(f'written to {os.path.join("results", opt["name"])}')
            return
        from lossagent_eval.benchmark import run_benchmark

        table, results_dir = run_benchmark(args.opt, force_yml=args.force_yml, launcher=args.launcher)
    except (UserError, FileNotFoundError) as err:
        if os.environ.get('LOSSAGENT_TRACEBACK'):
            raise
        sys.exit(f'test.py: error: {err}')  # one line, naming the option key and the path
    finally:
        if 'torch.distributed' in sys.modules:  # nothing to close, and nothing to import, before torch was
            from lossagent_runtime.basicsr_fixes import close_dist

            close_dist()
    if table is not None:  # rank 0
        print(table.to_markdown())
        print(f'written to {results_dir}')


if __name__ == '__main__':
    main()
