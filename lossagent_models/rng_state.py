"""Random-number state in the training state, so a resumed run continues the same run.

BasicSR saves networks and optimizers but not the RNGs: a resumed run crops, flips and drops
paths differently from the run it continues. Python's and NumPy's generators (used by the
datasets in the main process) are saved as plain lists (loadable with weights_only=True);
torch's generator is re-seeded at each iteration from (seed, rank, iteration), which makes the
network's own randomness independent of when the process started.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def host_rng_state() -> dict:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {'python': [version, list(internal), gauss],
            'numpy': [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def restore_host_rng_state(state: dict) -> None:
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def seed_iteration(seed: int, rank: int, iteration: int) -> None:
    torch.manual_seed((seed * 1_000_003 + rank * 7_919 + iteration) % (2 ** 63))
