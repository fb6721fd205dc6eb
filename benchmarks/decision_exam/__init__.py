"""The decision exam behind `benchmarks/exam.py` (`make exam`; results in benchmarks/exam.md).

policies.py        which policies sit the exam: option dicts built with agent.build_policy (the hybrid
                   joins when it is registered), the llm's endpoint (embedded model or --base_url)
reading.py         the reading test: synthetic histories with one unambiguous weight effect, and its scorer
states.py          the counterfactual part's training states: real demo runs (train.py), cached, and
                   the history each decision point had
counterfactual.py  training each proposal from a saved state with common random numbers (the lookahead
                   loop's replay) and scoring its EMA on the agent's images and held-out photos
report.py          the tables of benchmarks/exam.md (paired intervals from policy_study/stats.py)
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
for _path in (ROOT, ROOT / 'benchmarks'):  # the project, and benchmarks/ (policy_study)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
