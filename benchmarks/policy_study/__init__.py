"""The CPU policy study behind `benchmarks/study.py` (benchmarks/protocol.md; results in benchmarks/study.md).

plan.py     the task, the photo sets, the arms and seeds, the option file of every run, the cost estimate
runner.py   train.py / test.py as processes, two at a time; finished runs are reused
pbt.py      the PBT arm on Ray Tune (optional extra: pip install -e ".[pbt]")
report.py   held-out tables per seed -> the pre-registered comparisons, cost axis, CSV, plots
stats.py    paired t, exact Wilcoxon, Holm, Fieller, power (no scipy)
power.py    the protocol's seed counts
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
