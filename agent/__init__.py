"""The loss agent: plain Python with no dependency on the training loop, so it can be driven and
tested on its own (see `agent.runs.replay`).

    record.py, decision_log.py   what a stage boundary produced, and the run's file of them
    weights.py, objective.py     the one weight check; the experts' scores combined into one number
    options.py, registry.py      option readers; the registry class and folder scan
    experts.py, directions.py    expert options; which way each metric is better
    stage_files.py, human_feedback.py   the files a run's agent/ folder holds for people and the board
    policies/                    the policies (fixed, random, adaptive, lookahead, llm, schedule), registry
    llm/                         talking to a language model: client, server, output modes, prompts, parser
    runs/                        reading experiment folders: summary, plot, replay, the run board
"""

from .record import ExpertInfo, History, StageRecord, mean_of_numbers
from .policies import Decision, LossPolicy, build_policy, policy_names, register_policy

__all__ = [
    'Decision',
    'ExpertInfo',
    'History',
    'LossPolicy',
    'StageRecord',
    'mean_of_numbers',
    'build_policy',
    'policy_names',
    'register_policy',
]
