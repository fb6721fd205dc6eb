"""Train with LossAgent: `python train.py -opt options/train/<name>.yml [--auto_resume] [--debug]
[--launcher none|pytorch|slurm] [--force_yml key:sub=value ...]` (BasicSR's flags; `--debug` also
shortens `agent.stage_iters` so that the run reaches the agent, see lossagent_runtime/debug_run.py).

Exit status: 0 trained to the end; 2 a one-line error (options, a damaged or unwritable checkpoint);
75 stopped by a preemption signal after saving its state (continue with --auto_resume)."""

import logging
import os
import os.path as osp
import sys

import lossagent_compat  # noqa: F401  (must precede basicsr)
import lossagent_arch  # noqa: F401  (registers our architectures)
import lossagent_data  # noqa: F401  (datasets)
import lossagent_losses  # noqa: F401  (losses)
import lossagent_models  # noqa: F401  (LossAgentModel)
import lossagent_eval.val_metrics  # noqa: F401  (calculate_iqa: pyiqa metrics in `val`)
from lossagent_errors import UserError
from lossagent_runtime import basicsr_fixes
from lossagent_runtime.pipeline import train_pipeline
from lossagent_runtime.preemption import EXIT_PREEMPTED, Preempted


def main() -> int:
    basicsr_fixes.install()
    try:
        train_pipeline(osp.dirname(osp.abspath(__file__)), sys.argv)
    except (UserError, FileNotFoundError) as err:
        if os.environ.get('LOSSAGENT_TRACEBACK'):
            raise
        print(f'train.py: error: {err}', file=sys.stderr)
        return 2
    except Preempted as stopped:
        print(f'train.py: {stopped}', file=sys.stderr, flush=True)
        logging.shutdown()
        sys.stdout.flush()
        # not sys.exit: it would wait for a policy thread still in an HTTP request (everything is saved)
        os._exit(EXIT_PREEMPTED)
    finally:
        basicsr_fixes.close_dist()  # os._exit above skips it, and C++ teardown with it
    return 0


if __name__ == '__main__':
    sys.exit(main())
