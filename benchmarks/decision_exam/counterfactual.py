"""Counterfactual branches: each proposal trained from the same saved state on the same batches.

The demo's LossAgentModel is built in-process without its `agent` section (the weights are set per
branch), and every branch is the lookahead loop's `replay` (lossagent_hook/lookahead_loop.py): the
state restored (training_snapshot.py), the weights set, then `P` iterations of the model's own
`train_step` on kept inputs and learning rates, each iteration seeded by its number -- common random
numbers, so two branches of one point differ only in their weights. The EMA generator (what users
deploy and what the demo's agent scores) is then scored by the demo's experts on the agent's
validation images (what the policies optimise; a seeded subset when `val_images` is smaller than the
demo's 23) and on held-out photos (the policy study's *selection* photos; the final-test photos are
reserved for the confirmatory study).

Identical proposals are trained once (`weights_key`).
"""

from __future__ import annotations

import math
import random
import time

import numpy as np
import torch
from torch.utils.data.dataloader import default_collate

from . import ROOT
from policy_study.plan import HELDOUT_PHOTOS, demo_options


def weights_key(weights: dict, names: list[str]) -> tuple:
    """Weights rounded to 6 significant digits: proposals equal at that precision train once."""
    return tuple(float(f'{float(weights[n]):.6g}') for n in names)


def oracle_grid(initial: dict, multipliers: list[float]) -> list[dict]:
    """A fixed grid: each non-anchor weight at initial x (1 and each multiplier), all combinations."""
    names = list(initial)
    grid = [dict(initial)]
    for name in names[1:]:
        grid = [{**g, name: initial[name] * m} for g in grid for m in (1.0, *multipliers)]
    return grid


def _mean(values) -> float | None:
    numbers = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(numbers) / len(numbers) if numbers else None


class Brancher:
    """The demo's model, data and experts, ready to train and score branches from saved states."""

    def __init__(self, val_images: int | None = None, heldout_crops: int = 2, threads: int | None = None):
        import lossagent_compat  # noqa: F401  (before basicsr)
        import lossagent_arch  # noqa: F401
        import lossagent_data  # noqa: F401
        import lossagent_losses  # noqa: F401
        import lossagent_models  # noqa: F401
        from basicsr.data import build_dataset
        from basicsr.models import build_model
        from lossagent_hook.experts import build_experts
        from lossagent_hook.validation_set import AgentValidationSet
        from lossagent_runtime import basicsr_fixes

        basicsr_fixes.install()
        if threads:
            torch.set_num_threads(threads)
        opt = demo_options()
        agent = opt.pop('agent')
        scale = int(opt['scale'])
        opt.update(num_gpu=0, dist=False, rank=0, world_size=1, is_train=True, auto_resume=False)
        opt['datasets']['train'].update(phase='train', scale=scale)
        root = ROOT / 'experiments' / 'exam_branches'
        opt['path'].update(
            pretrain_network_g=str(ROOT / opt['path']['pretrain_network_g']),
            experiments_root=str(root),
            models=str(root / 'models'),
            training_states=str(root / 'training_states'),
            log=str(root),
            visualization=str(root / 'visualization'),
        )
        self.model = build_model(opt)
        self.loss_names = list(self.model.losses.names)
        self.train_set = build_dataset(opt['datasets']['train'])
        self.batch_size = int(opt['datasets']['train']['batch_size_per_gpu'])
        self.experts = build_experts(agent['experts'], 'cpu')
        pad = int(opt['network_g'].get('window_size', 1))
        count = min(int(val_images or agent['num_images']), int(agent['num_images']))
        self.sets = {
            'val': AgentValidationSet(agent['dataset'], count, int(agent.get('image_seed', 0)), scale, pad),
            'heldout': AgentValidationSet(
                {
                    'name': 'exam_heldout',
                    'type': 'SkimagePhotoDataset',
                    'images': list(HELDOUT_PHOTOS),
                    'crop_size': 192,
                    'crops_per_side': heldout_crops,
                    'min_std': 0.05,
                },
                10**6,
                0,
                scale,
                pad,
            ),
        }

    def inputs(self, seed: int, boundary: int, iterations: int) -> list[dict]:
        """`iterations` training batches of the demo's dataset (random crops, flips), drawn with a
        seed of their own per point: every branch of the point trains on these."""
        random.seed(f'exam-batches-{seed}-{boundary}')
        np.random.seed((seed * 100_003 + boundary) % 2**32)
        out = []
        for _ in range(iterations):
            samples = [self.train_set[random.randrange(len(self.train_set))] for _ in range(self.batch_size)]
            batch = default_collate(samples)
            out.append({'lq': batch['lq'], 'gt': batch['gt']})
        return out

    def probe(self, snapshot: dict, boundary: int, inputs: list[dict]):
        """The lookahead loop's window for this point: the state, the kept inputs, the learning rates."""
        from lossagent_hook.lookahead_loop import Probe

        self.model.restore_snapshot(snapshot)
        lrs = self.model.learning_rates()
        return Probe(boundary, len(inputs), [], snapshot, list(inputs), [lrs] * len(inputs))

    def branch(self, probe, weights: dict) -> dict:
        """Train `weights` through the window and score the EMA: per set, each expert's mean."""
        from lossagent_hook.lookahead_loop import replay

        started = time.perf_counter()
        ok = replay(self.model, probe, weights)
        trained = time.perf_counter()
        out = {'ok': ok}
        for label, images in self.sets.items():
            outputs = images.restore(self.model.net_g_ema, 'cpu')
            context = {'stage': 0, 'names': images.names, 'agent_dir': None}
            out[label] = {e.name: _mean(e.score(outputs, images.gts, context)) for e in self.experts}
        out['train_s'] = round(trained - started, 3)
        out['score_s'] = round(time.perf_counter() - trained, 3)
        return out


# ---- one decision point, in this process or in a worker ------------------------------------------
_BRANCHER: Brancher | None = None


def init_worker(val_images: int | None, heldout_crops: int, threads: int = 1) -> None:
    """A worker process's Brancher, built once (ProcessPoolExecutor's initializer)."""
    global _BRANCHER
    _BRANCHER = Brancher(val_images, heldout_crops, threads)


def evaluate_point(task: dict) -> dict:
    """Every weighting of one point trained and scored: {'outcomes': {key: outcome}, 'wall_s'}.
    task: {'folder', 'seed', 'boundary', 'iterations', 'weightings': {key: weights}}."""
    from .states import snapshot_at

    started = time.perf_counter()
    brancher = _BRANCHER
    probe = brancher.probe(
        snapshot_at(task['folder'], task['boundary']),
        task['boundary'],
        brancher.inputs(task['seed'], task['boundary'], task['iterations']),
    )
    outcomes = {key: brancher.branch(probe, weights) for key, weights in task['weightings'].items()}
    return {'outcomes': outcomes, 'wall_s': round(time.perf_counter() - started, 2)}
