"""Train with LossAgent: `python train.py -opt options/train/<name>.yml [--auto_resume] [--debug]
[--launcher none|pytorch] [--force_yml key:sub=value ...]` (BasicSR's flags)."""
import os.path as osp

import lossagent_compat  # noqa: F401  (must precede basicsr)
import lossagent_arch  # noqa: F401  (registers our architectures)
import lossagent_data  # noqa: F401  (datasets)
import lossagent_losses  # noqa: F401  (losses)
import lossagent_models  # noqa: F401  (LossAgentModel)
from lossagent_models import basicsr_runtime
from basicsr.train import train_pipeline

if __name__ == '__main__':
    basicsr_runtime.install()
    train_pipeline(osp.dirname(osp.abspath(__file__)))
