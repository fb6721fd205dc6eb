"""`train.py --debug`: BasicSR's quick sanity run, shortened so that it reaches the agent.

BasicSR's debug mode (a name starting with `debug_`) validates and saves every 8 iterations and
logs every one; a stage of 5000 iterations would never end, so the agent -- the part a user most
wants to see work -- would never run. Here the stage shrinks to those 8 iterations (a boundary at
8, 16, ...), the snapshots and a lookahead window fit inside it, and the agent scores two images.
Applied to the parsed options before they are checked, so the checks see the debug values.
"""

from __future__ import annotations

from agent.policies import find_policy

DEBUG_STAGE_ITERS = 8  # = BasicSR's debug val_freq and save_checkpoint_freq
DEBUG_NUM_IMAGES = 2


def is_debug_run(opt: dict) -> bool:
    return 'debug' in str(opt.get('name', ''))  # BasicSR's own test (basicsr/utils/options.py)


def _shrink(section: dict, key: str, limit: int, changes: list[str], where: str) -> None:
    value = section.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        section[key] = limit
        changes.append(f'{where}{key} {value} -> {limit}')


def shrink_agent_for_debug(opt: dict) -> list[str]:
    """Shorten `agent` in place for a debug run; returns one 'key old -> new' line per change."""
    agent = opt.get('agent')
    if not is_debug_run(opt) or not isinstance(agent, dict):
        return []
    changes: list[str] = []
    _shrink(agent, 'stage_iters', DEBUG_STAGE_ITERS, changes, 'agent.')
    stage = agent.get('stage_iters')
    if not isinstance(stage, int) or isinstance(stage, bool) or stage < 1:
        return changes  # the option check names the bad value
    _shrink(agent, 'num_images', DEBUG_NUM_IMAGES, changes, 'agent.')
    _shrink(agent, 'snapshots', 2, changes, 'agent.')
    snapshots = agent.get('snapshots', 1)
    if isinstance(snapshots, int) and snapshots > 1 and agent.get('snapshot_every') is not None:
        _shrink(agent, 'snapshot_every', max(1, (stage - 1) // (snapshots - 1)), changes, 'agent.')
    policy = agent.get('policy')
    kind = policy.get('type') if isinstance(policy, dict) else None
    if isinstance(kind, str) and getattr(find_policy(kind), 'needs_probes', False):
        if isinstance(policy.get(kind), dict):  # the option set of that type (agent/policies/registry.py)
            policy = policy[kind]
        policy.setdefault('probe_iters', 10)  # the probing policy's default, made explicit to shrink it
        _shrink(policy, 'probe_iters', max(1, stage // 2), changes, 'agent.policy.')
    return changes
