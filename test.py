"""Benchmark one or more trained networks side by side, BasicSR-style:

    python test.py -opt options/test/CISR_benchmark.yml

Writes results/<name>/<name>.md and .csv (the paper's table layout) and, with val.save_images,
results/<name>/visualization/<method>/<dataset>/*.png. Schema: options/test/README.md.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lossagent_compat  # noqa: F401,E402  (before basicsr)
from lossagent_errors import UserError  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='path to the test option YAML')
    args = parser.parse_args(argv)
    from lossagent_eval.benchmark import run_benchmark
    try:
        table, results_dir = run_benchmark(args.opt)
    except (UserError, FileNotFoundError) as err:
        if os.environ.get('LOSSAGENT_TRACEBACK'):
            raise
        sys.exit(f'test.py: error: {err}')  # one line, naming the option key and the path
    print(table.to_markdown())
    print(f'written to {results_dir}')


if __name__ == '__main__':
    main()
