"""Run `train.py` for real on a tiny configuration (CPU, a few iterations) and read what it wrote."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_options(
    name: str,
    *,
    gan: bool = False,
    stage_iters: int = 3,
    total_iter: int = 9,
    policy: dict | None = None,
    experts: dict | None = None,
) -> dict:
    """The demo's task shrunk to seconds: SwinIR embed 16, 64-px crops (128 with a GAN)."""
    gt_size = 128 if gan else 64
    losses = {'L1': {'type': 'L1Loss', 'loss_weight': 1.0}, 'SSIM': {'type': 'SSIMLoss', 'loss_weight': 0.5}}
    if gan:
        losses['GAN'] = {
            'type': 'GANLoss',
            'gan_type': 'vanilla',
            'loss_weight': 0.01,
            'real_label_val': 1.0,
            'fake_label_val': 0.0,
        }
    opt = {
        'name': name,
        'model_type': 'LossAgentModel',
        'scale': 2,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            'train': {
                'name': 'tiny_train',
                'type': 'SkimagePhotoDataset',
                'images': ['astronaut', 'camera'],
                'gt_size': gt_size,
                'use_hflip': True,
                'use_rot': False,
                'num_worker_per_gpu': 0,
                'batch_size_per_gpu': 2,
                'dataset_enlarge_ratio': 50,
                'prefetch_mode': None,
            }
        },
        'network_g': {
            'type': 'SwinIR',
            'upscale': 2,
            'in_chans': 3,
            'img_size': gt_size // 2,
            'window_size': 8,
            'img_range': 1.0,
            'depths': [1],
            'embed_dim': 16,
            'num_heads': [1],
            'mlp_ratio': 2,
            'upsampler': 'pixelshuffledirect',
            'resi_connection': '1conv',
        },
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0,
            'optim_g': {'type': 'Adam', 'lr': 2e-4, 'betas': [0.9, 0.99]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [100000], 'gamma': 0.5},
            'total_iter': total_iter,
            'warmup_iter': -1,
            'losses': losses,
        },
        'agent': {
            'stage_iters': stage_iters,
            'num_images': 3,
            'image_seed': 0,
            'dataset': {
                'name': 'tiny_val',
                'type': 'SkimagePhotoDataset',
                'images': ['chelsea'],
                'crop_size': 96,
                'crops_per_side': 2,
            },
            'experts': experts
            or {'NIQE': {'metric': 'niqe'}, 'PSNR': {'metric': 'psnr', 'test_y_channel': True, 'crop_border': 2}},
            'policy': policy or {'type': 'fixed'},
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': 1000,
            'use_tb_logger': False,
            'wandb': {'project': None, 'resume_id': None},
        },
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }
    if gan:
        opt['network_d'] = {'type': 'VGGStyleDiscriminator', 'num_in_ch': 3, 'num_feat': 8, 'input_size': 128}
        opt['train']['optim_d'] = {'type': 'Adam', 'lr': 2e-4, 'betas': [0.9, 0.99]}
    return opt


class Run:
    """One experiment under experiments/<unique name>, removed afterwards."""

    def __init__(self, tmp_path: Path, opt: dict):
        self.opt = copy.deepcopy(opt)
        self.name = self.opt['name'] = f'{self.opt["name"]}_{uuid.uuid4().hex[:8]}'
        self.yml = tmp_path / f'{self.name}.yml'
        self.yml.write_text(yaml.safe_dump(self.opt, sort_keys=False))
        self.root = ROOT / 'experiments' / self.name

    def train(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        env: dict | None = None,
        launcher: list[str] | None = None,
    ) -> subprocess.CompletedProcess:
        cmd = (launcher or [sys.executable]) + [str(ROOT / 'train.py'), '-opt', str(self.yml), *args]
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
        if check and proc.returncode != 0:
            raise AssertionError(f'train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}')
        return proc

    def records(self, include_superseded: bool = False) -> list[dict]:
        path = self.root / 'agent' / 'decisions.jsonl'
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [r for r in lines if include_superseded or not r.get('superseded')]

    def cleanup(self) -> None:
        for path in ROOT.glob(f'experiments/{self.name}*'):
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(ROOT / 'tb_logger' / self.name, ignore_errors=True)
