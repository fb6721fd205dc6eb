"""The loss agent: prompts, LLM client, answer parser, policies and history.

Plain Python with no dependency on the training loop, so it can be driven and tested
on its own (see `agent.replay`).
"""
from .base import (AgentConfigError, Decision, ExpertInfo, History, LossPolicy, OptionError, StageRecord,
                   mean_of_numbers)
from .registry import build_policy, policy_names, register_policy
from . import adaptive_policy, fixed_policy, llm_policy, random_policy  # noqa: F401  (importing registers the policies)

__all__ = ['AgentConfigError', 'Decision', 'ExpertInfo', 'History', 'LossPolicy', 'OptionError', 'StageRecord',
           'mean_of_numbers', 'build_policy', 'policy_names', 'register_policy']
