"""TensorBoard view of the agent, in `tb_logger/<name>/agent` (rank 0 only).

Its own folder beside BasicSR's event file: TensorBoard, and wandb's TensorBoard sync, read one
event file per folder at a time, so a second writer in BasicSR's folder hid BasicSR's scalars.
"""

from __future__ import annotations

import os.path as osp

import torch
import torch.nn.functional as F

from agent.record import StageRecord, is_number


def agent_tb_writer(opt: dict):
    """A SummaryWriter under BasicSR's folder, or None when BasicSR's TensorBoard logger is off."""
    logger_opt = opt.get('logger', {})
    if not logger_opt.get('use_tb_logger') or 'debug' in opt['name'] or opt.get('rank', 0) != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=osp.join(opt['root_path'], 'tb_logger', opt['name'], 'agent'))


def image_grid(images: list[torch.Tensor], size: int = 128) -> torch.Tensor:
    """Restorations of different sizes side by side: each resized to `size`² for the grid."""
    from torchvision.utils import make_grid

    tiles = [
        F.interpolate(img[None].float().cpu(), size=(size, size), mode='bilinear', align_corners=False)[0]
        for img in images
    ]
    return make_grid(torch.stack(tiles).clamp(0, 1), nrow=min(5, len(tiles)))


def log_scores(writer, record: StageRecord, outputs: list[torch.Tensor]) -> None:
    if writer is None:
        return
    step = record.iteration
    means = record.mean_scores()
    for expert, values in record.scores.items():
        if means.get(expert) is not None:
            writer.add_scalar(f'agent/score/{expert}', means[expert], step)
        for i, value in enumerate(values):
            if is_number(value):
                writer.add_scalar(f'agent/score/{expert}/image_{i}', value, step)
    if outputs:
        writer.add_image('agent/validation', image_grid(outputs), step)
    writer.flush()


def log_decision(writer, record: StageRecord) -> None:
    if writer is None:
        return
    for name, weight in record.weights_after.items():
        writer.add_scalar(f'agent/weight/{name}', weight, record.applied_iteration)
    writer.add_scalar('agent/fallback', float(bool(record.fallback)), record.iteration)
    if record.latency_s is not None:
        writer.add_scalar('agent/latency_s', record.latency_s, record.iteration)
    writer.flush()
