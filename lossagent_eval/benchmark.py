"""Run a benchmark described by a test YAML (schema: options/test/README.md) and write its table and log.

Order of work: datasets and metrics are built once; then per method the network is built, its
checkpoint loaded, and every dataset restored and scored image by image. Outputs are quantized to
uint8 first (as BasicSR's validation does), so scores describe the images a user would save.
"""

import copy
import logging
import os
import random
from collections import OrderedDict

import numpy as np
import torch
from tqdm import tqdm

import lossagent_compat  # noqa: F401  (before basicsr)
import lossagent_arch  # noqa: F401  (registers our archs)
import lossagent_data  # noqa: F401  (registers our datasets)
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import get_env_info, get_root_logger, get_time_str, imwrite, tensor2img
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.options import dict2str
from lossagent_arch.padding import pad_to_multiple
from lossagent_eval.checkpoint import load_checkpoint
from lossagent_eval.tables import REF_ROW, BenchmarkTable
from lossagent_eval.benchmark_options import BASICSR_METRICS as BASICSR_NAMES
from lossagent_eval.benchmark_options import check_files, load_options
from lossagent_iqa import create_iqa_metric, lower_is_better
from lossagent_runtime.basicsr_fixes import init_dist

BASICSR_METRICS = dict(zip(BASICSR_NAMES, (calculate_psnr, calculate_ssim)))
DEFAULT_LABELS = {
    'niqe': 'NIQE',
    'maniqa': 'MANIQA',
    'clipiqa': 'CLIPIQA',
    'qalign': 'Q-Align',
    'psnr': 'PSNR',
    'ssim': 'SSIM',
    'lpips': 'LPIPS',
    'musiq': 'MUSIQ',
    'piqe': 'PIQE',
}
DEFAULT_DECIMALS = {'niqe': 2, 'qalign': 2, 'psnr': 2, 'piqe': 2, 'musiq': 2}


class Metric:
    """One table row block: a pyiqa metric, or BasicSR's psnr/ssim on the Y channel."""

    def __init__(self, key, mopt, scale, device):
        mopt = dict(mopt or {})
        self.key = key
        self.type = mopt.pop('type', key)
        self.label = mopt.pop('label', DEFAULT_LABELS.get(self.type, self.type.upper()))
        self.decimals = mopt.pop('decimals', DEFAULT_DECIMALS.get(self.type, 4))
        self.backend = mopt.pop('backend', 'basicsr' if self.type in BASICSR_METRICS else 'pyiqa')
        crop_border = mopt.pop('crop_border', None)
        self.test_y_channel = mopt.pop('test_y_channel', True)
        self.lower_better = lower_is_better(self.type, f'metrics.{key}')
        if self.backend == 'basicsr':  # benchmark_options.check_metric allowed only these
            self.fn, self.needs_gt = BASICSR_METRICS[self.type], True
        else:
            self.fn = create_iqa_metric(self.type, device=device, owner=f'metrics.{key}', **mopt)
            self.needs_gt = getattr(self.fn, 'metric_mode', 'NR') != 'NR'
        if crop_border is None:  # BasicSR's convention for full-reference SR scores: crop = scale; NR: none
            crop_border = scale if self.needs_gt and scale > 1 else 0
        self.crop_border = int(crop_border)
        self.device = device

    def __call__(self, img, gt=None):
        """img, gt: uint8 BGR HxWxC arrays as tensor2img gives them."""
        if self.backend == 'basicsr':
            return float(self.fn(img, gt, crop_border=self.crop_border, test_y_channel=self.test_y_channel))
        c = self.crop_border
        if c:
            img = img[c:-c, c:-c]
            gt = gt[c:-c, c:-c] if gt is not None else None

        def to_tensor(a):
            return (
                torch.from_numpy(np.ascontiguousarray(a[:, :, ::-1].transpose(2, 0, 1)))
                .float()
                .div(255.0)[None]
                .to(self.device)
            )

        with torch.no_grad():
            score = self.fn(to_tensor(img), to_tensor(gt)) if self.needs_gt else self.fn(to_tensor(img))
        return float(score.reshape(-1)[0]) if torch.is_tensor(score) else float(score)


def build_method_network(opt, method, mopt, device):
    net_opt = copy.deepcopy(mopt.get('network_g') or opt.get('network_g'))
    net = build_network(net_opt)
    ckpt = mopt.get('pretrain_network_g')
    if ckpt is not None:  # else allow_random_init (benchmark_options.load_options checked)
        load_checkpoint(
            net,
            ckpt,
            param_key=mopt.get('param_key_g', 'params'),
            strict=mopt.get('strict_load_g', True),
            strip_prefix=mopt.get('strip_prefix'),
            owner=f'methods.{method}.pretrain_network_g',
        )
    pad = mopt.get('pad_multiple', opt.get('pad_multiple', net_opt.get('window_size', 1)))
    return net.to(device).eval(), int(pad)


def restore(net, lq, pad, scale):
    """Network output for one LQ batch, padded to `pad` and cropped back to scale x input."""
    lq, (h, w) = pad_to_multiple(lq, pad) if pad > 1 else (lq, lq.shape[-2:])
    with torch.no_grad():
        out = net(lq)
    return out[..., : h * scale, : w * scale]


def _items(dataset):
    for i in range(len(dataset)):
        yield dataset[i]


def _dataset_opts(opt):
    datasets = OrderedDict()
    for key, dopt in opt['datasets'].items():
        dopt = dict(dopt)
        dopt.setdefault('name', key)
        dopt.setdefault('phase', 'val')
        dopt.setdefault('scale', opt.get('scale', 1))
        dopt.setdefault('io_backend', {'type': 'disk'})
        datasets[dopt['name']] = dopt
    return datasets


def _device(opt, local_rank):
    if opt.get('num_gpu', 0) and torch.cuda.is_available():
        return torch.device(f'cuda:{local_rank % torch.cuda.device_count()}')
    return torch.device('cpu')


def start_log(results_dir, opt):
    """results/<name>/test_<name>_<time>.log, through BasicSR's root logger (as its test_pipeline)."""
    os.makedirs(results_dir, exist_ok=True)
    log_file = os.path.join(results_dir, f'test_{opt["name"]}_{get_time_str()}.log')
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str({k: v for k, v in opt.items() if k != '_file'}))
    return logger


def run_benchmark(opt_path, root='.', force_yml=None, launcher='none'):
    """Evaluate every method on every dataset; returns (table, results_dir) (table None on ranks > 0).

    With a launcher (torchrun / srun), rank r evaluates methods r, r + world, ... on its own device and
    rank 0 gathers the scores, writes the table and the log.
    """
    opt = load_options(opt_path, force_yml)
    check_files(opt)
    if launcher != 'none':
        init_dist(launcher)
    rank, world = get_dist_info()
    seed = opt.get('manual_seed', 0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = _device(opt, int(os.environ.get('LOCAL_RANK', rank)))
    scale = int(opt.get('scale', 1))
    val = opt.get('val') or {}
    results_dir = os.path.join(root, (opt.get('path') or {}).get('results_root', 'results'), opt['name'])
    logger = start_log(results_dir, opt) if rank == 0 else get_root_logger(logger_name='basicsr')
    datasets = OrderedDict((name, build_dataset(dopt)) for name, dopt in _dataset_opts(opt).items())
    metrics = OrderedDict((key, Metric(key, mopt, scale, device)) for key, mopt in opt['metrics'].items())
    methods = list(opt['methods'])
    rows = methods + ([REF_ROW] if val.get('gt_row', True) else [])
    scores = {}  # (metric, row, dataset) -> mean score or None

    if REF_ROW in rows and rank == 0:  # NR metrics on the ground truth, once per dataset
        for dname, dataset in datasets.items():
            sums = {k: [] for k, m in metrics.items() if not m.needs_gt}
            for item in tqdm(_items(dataset), total=len(dataset), desc=f'{REF_ROW} {dname}', leave=False):
                if 'gt' not in item:
                    break
                gt = tensor2img(item['gt'])
                for k in sums:
                    sums[k].append(metrics[k](gt))
            for k, vals in sums.items():
                scores[(k, REF_ROW, dname)] = float(np.mean(vals)) if vals else None

    for method in methods[rank::world]:
        mopt = opt['methods'][method] or {}
        net, pad = build_method_network(opt, method, mopt, device)
        for dname, dataset in datasets.items():
            per_metric = {k: [] for k in metrics}
            for item in tqdm(_items(dataset), total=len(dataset), desc=f'{method} {dname}'):
                out = restore(net, item['lq'][None].to(device), pad, scale)
                img = tensor2img(out.cpu())
                gt = tensor2img(item['gt']) if 'gt' in item else None
                for k, metric in metrics.items():
                    if metric.needs_gt and gt is None:
                        continue
                    per_metric[k].append(metric(img, gt))
                if val.get('save_images', False):
                    stem = os.path.splitext(os.path.basename(item['lq_path']))[0]
                    imwrite(img, os.path.join(results_dir, 'visualization', method, dname, f'{stem}.png'))
            for k, vals in per_metric.items():
                scores[(k, method, dname)] = float(np.mean(vals)) if vals else None
            logger.info(
                f'{method} on {dname} ({len(dataset)} images): '
                + ', '.join(
                    f'{k} {v:.4f}' for (k, m, d), v in scores.items() if m == method and d == dname and v is not None
                )
            )
        del net

    if world > 1:  # every rank's scores to rank 0
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, scores)
        scores = {key: value for part in gathered for key, value in part.items()}
    if rank != 0:
        return None, results_dir
    table = BenchmarkTable(
        list(metrics),
        rows,
        list(datasets),
        {k: m.lower_better for k, m in metrics.items()},
        labels={k: m.label for k, m in metrics.items()},
        decimals={k: m.decimals for k, m in metrics.items()},
    )
    for (metric, row, dname), value in scores.items():
        table.set(metric, row, dname, value)
    table.write_csv(os.path.join(results_dir, f'{opt["name"]}.csv'))
    markdown = table.to_markdown(opt.get('title', opt['name']))
    with open(os.path.join(results_dir, f'{opt["name"]}.md'), 'w', encoding='utf-8') as f:
        f.write(markdown)
    logger.info('\n' + markdown)
    return table, results_dir
