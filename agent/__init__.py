"""The loss agent: stage records, policies, prompts, LLM client and answer parser.

Plain Python with no dependency on the training loop, so it can be driven and tested
on its own (see `agent.replay`).
"""
from .record import ExpertInfo, History, StageRecord, mean_of_numbers
from .policy import Decision, LossPolicy
from .registry import build_policy, policy_names, register_policy
from . import adaptive_policy, fixed_policy, llm_policy, lookahead_policy, random_policy, schedule_policy  # noqa: F401,E501

__all__ = ['Decision', 'ExpertInfo', 'History', 'LossPolicy', 'StageRecord', 'mean_of_numbers', 'build_policy',
           'policy_names', 'register_policy']
