"""Random-number state in the training state, so a resumed run continues the same run.

BasicSR saves networks and optimizers but not the RNGs: a resumed run crops, flips and drops
paths differently from the run it continues. Python's and NumPy's generators (used by the
datasets in the main process) are saved as plain lists (loadable with weights_only=True);
torch's generator is re-seeded at each iteration from (seed, rank, iteration), which makes the
network's own randomness independent of when the process started. With several processes each
rank's generators are gathered into rank 0's state (`rng_ranks`) and each rank restores its own.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist


def host_rng_state() -> dict:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        'python': [version, list(internal), gauss],
        'numpy': [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def restore_host_rng_state(state: dict) -> None:
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def seed_iteration(seed: int, rank: int, iteration: int) -> None:
    torch.manual_seed((seed * 1_000_003 + rank * 7_919 + iteration) % (2**63))


def every_rank_host_rng_state() -> list[dict]:
    """Each rank's `host_rng_state()`, in rank order (a collective with several processes)."""
    state = host_rng_state()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def restore_rank_host_rng_state(saved: dict, rank: int) -> None:
    """This rank's generators from a training state (rank 0's in states written before `rng_ranks`)."""
    ranks = saved.get('rng_ranks') or []
    restore_host_rng_state(ranks[rank] if rank < len(ranks) else saved['rng'])
