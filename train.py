"""Train with LossAgent: `python train.py -opt options/train/<name>.yml [--auto_resume] [--debug]
[--launcher none|pytorch] [--force_yml key:sub=value ...]` (BasicSR's flags)."""
import os
import os.path as osp
import sys

import lossagent_compat  # noqa: F401  (must precede basicsr)
import lossagent_arch  # noqa: F401  (registers our architectures)
import lossagent_data  # noqa: F401  (datasets)
import lossagent_losses  # noqa: F401  (losses)
import lossagent_models  # noqa: F401  (LossAgentModel)
from agent import OptionError
from basicsr.train import train_pipeline
from lossagent_models import basicsr_runtime
from lossagent_models.iqa_metrics import MissingWeightsError


def main() -> int:
    basicsr_runtime.install()
    try:
        train_pipeline(osp.dirname(osp.abspath(__file__)))
    except (OptionError, MissingWeightsError, FileNotFoundError) as err:
        if os.environ.get('LOSSAGENT_TRACEBACK'):
            raise
        print(f'train.py: error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
