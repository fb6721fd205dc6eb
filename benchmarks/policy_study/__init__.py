"""The CPU policy study behind `benchmarks/study.py` (see benchmarks/study.md).

    plan.py     the task, the sizes, the option file of every run, the list of runs
    runner.py   train.py / test.py as processes, two at a time; finished runs are reused
    report.py   held-out tables per seed -> mean +- std, paired differences, CSV, plots
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
