"""The policies: each turns the history of a run into the loss weights of the next stage.

    base.py              LossPolicy (what every policy is) and Decision (its answer at a boundary)
    registry.py          POLICY_REGISTRY, @register_policy, build_policy / check_policy
    <name>_policy.py     one policy each: fixed, random, adaptive, lookahead, llm, hybrid, schedule
    log_weight_search.py the step-size-adapted search in log-weight space that adaptive and lookahead share
    rng.py               a seeded random generator whose state is JSON (resume continues the same draws)

Every `*_policy.py` here is imported below, as BasicSR imports every `*_arch.py`: a new policy is a
new file with `@register_policy('name')` on its class, and `agent.policy.type: name` selects it.
"""

from ..registry import import_modules
from .base import DECIDERS, Decision, LossPolicy
from .registry import (
    POLICY_REGISTRY,
    build_policy,
    check_policy,
    find_policy,
    policy_names,
    register_policy,
    selected_options,
)

POLICY_MODULES = import_modules(__file__, __name__, 'policy')

__all__ = [
    'DECIDERS',
    'Decision',
    'LossPolicy',
    'POLICY_MODULES',
    'POLICY_REGISTRY',
    'build_policy',
    'check_policy',
    'find_policy',
    'policy_names',
    'register_policy',
    'selected_options',
]
