"""test.py end to end: two tiny SwinIR checkpoints, two generated x4 test sets, niqe/psnr/ssim.

The table's numbers are checked against the metrics computed here directly (basicsr's
calculate_psnr/ssim on the Y channel with crop_border = scale, pyiqa NIQE), plus bold-best and Avg.
"""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from skimage import data as skdata

import lossagent_compat  # noqa: F401
from basicsr.archs.swinir_arch import SwinIR
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, tensor2img
from basicsr.utils.matlab_functions import imresize
from lossagent_eval.tables import AVG, REF_ROW, BenchmarkTable
from lossagent_iqa import create_iqa_metric

ROOT = Path(__file__).resolve().parents[1]
NET = dict(
    type='SwinIR',
    upscale=4,
    in_chans=3,
    img_size=24,
    window_size=8,
    img_range=1.0,
    depths=[1],
    embed_dim=12,
    num_heads=[2],
    mlp_ratio=2,
    upsampler='pixelshuffle',
    resi_connection='1conv',
)
SETS = {'SetA': [('astronaut', 0, 0), ('coffee', 100, 150)], 'SetB': [('chelsea', 50, 100), ('rocket', 200, 250)]}
GT_SIZE = 128  # NIQE wants >= 96 px; LR 32 divides by the window (8)


def _make_sets(root):
    for name, crops in SETS.items():
        for sub in ('GT', 'LR'):
            (root / name / sub).mkdir(parents=True)
        for photo, y, x in crops:
            gt = np.ascontiguousarray(getattr(skdata, photo)()[y : y + GT_SIZE, x : x + GT_SIZE, :3][:, :, ::-1])
            lr = np.clip(np.round(imresize(gt / 255.0, 0.25) * 255), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name / 'GT' / f'{photo}.png'), gt)
            cv2.imwrite(str(root / name / 'LR' / f'{photo}.png'), lr)


def _make_checkpoints(root):
    paths = {}
    for method, seed, key, prefix in (('Fixed', 1, 'params', ''), ('LossAgent', 2, 'params_ema', 'module.')):
        torch.manual_seed(seed)
        net = SwinIR(**{k: v for k, v in NET.items() if k != 'type'})
        for p in net.parameters():  # a bit more than the init, so methods differ clearly
            p.data += 0.02 * torch.randn_like(p)
        paths[method] = root / f'{method}.pth'
        torch.save({key: {prefix + k: v for k, v in net.state_dict().items()}}, paths[method])
    return paths


def _expected(root, ckpts):
    """Per method/dataset means computed directly with basicsr/pyiqa."""
    niqe = create_iqa_metric('niqe')
    exp = {m: {} for m in ('niqe', 'psnr', 'ssim')}
    for method, path in ckpts.items():
        net = SwinIR(**{k: v for k, v in NET.items() if k != 'type'}).eval()
        state = torch.load(path)
        state = state.get('params_ema', state.get('params'))
        net.load_state_dict({k.replace('module.', '', 1): v for k, v in state.items()}, strict=True)
        for name, crops in SETS.items():
            scores = {m: [] for m in exp}
            for photo, _, _ in crops:
                lr = cv2.imread(str(root / name / 'LR' / f'{photo}.png')).astype(np.float32) / 255.0
                gt = cv2.imread(str(root / name / 'GT' / f'{photo}.png'))
                with torch.no_grad():
                    out = tensor2img(net(img2tensor(lr, bgr2rgb=True, float32=True)[None]))
                scores['psnr'].append(calculate_psnr(out, gt, crop_border=4, test_y_channel=True))
                scores['ssim'].append(calculate_ssim(out, gt, crop_border=4, test_y_channel=True))
                t = torch.from_numpy(out[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255.0
                scores['niqe'].append(float(niqe(t)))
            for m in exp:
                exp[m].setdefault(method, {})[name] = float(np.mean(scores[m]))
    for name, crops in SETS.items():
        vals = []
        for photo, _, _ in crops:
            gt = cv2.imread(str(root / name / 'GT' / f'{photo}.png'))
            vals.append(float(niqe(torch.from_numpy(gt[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255.0)))
        exp['niqe'].setdefault(REF_ROW, {})[name] = float(np.mean(vals))
    return exp


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('bench')
    _make_sets(root)
    ckpts = _make_checkpoints(root)
    opt = {
        'name': 'tiny_bench',
        'scale': 4,
        'num_gpu': 0,
        'network_g': NET,
        'methods': {
            m: {'pretrain_network_g': str(p), 'param_key_g': 'params_ema' if m == 'LossAgent' else 'params'}
            for m, p in ckpts.items()
        },
        'datasets': {
            n: {'type': 'PairedImageDataset', 'dataroot_gt': str(root / n / 'GT'), 'dataroot_lq': str(root / n / 'LR')}
            for n in SETS
        },
        'metrics': {'niqe': None, 'psnr': {'test_y_channel': True}, 'ssim': None},
        'val': {'gt_row': True, 'save_images': True},
    }
    (root / 'bench.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    env = dict(os.environ, HF_HUB_OFFLINE='1', TORCH_HOME=str(root / 'torch_home'))
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'test.py'), '-opt', str(root / 'bench.yml')],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, ckpts, root / 'results' / 'tiny_bench'


def test_numbers_match_direct_metrics(run):
    root, ckpts, out = run
    table = BenchmarkTable.read_csv(out / 'tiny_bench.csv')
    exp = _expected(root, ckpts)
    assert table.metrics == ['niqe', 'psnr', 'ssim'] and table.datasets == list(SETS)
    for metric, rows in exp.items():
        for row, per_set in rows.items():
            for dataset, value in per_set.items():
                assert table.scores[metric][row][dataset] == pytest.approx(value, rel=1e-6, abs=1e-6), (
                    metric,
                    row,
                    dataset,
                )
    # no reference row for full-reference metrics
    assert all(v is None for v in table.scores['psnr'][REF_ROW].values())


def test_markdown_bold_best_and_avg(run):
    _, _, out = run
    table = BenchmarkTable.read_csv(out / 'tiny_bench.csv')
    md = (out / 'tiny_bench.md').read_text()
    assert 'NIQE↓' in md and 'PSNR↑' in md and 'SSIM↑' in md and '| Metrics | Methods | SetA | SetB | Avg. |' in md
    lines = md.splitlines()
    for metric, label, dec in (('niqe', 'NIQE↓', 2), ('psnr', 'PSNR↑', 2), ('ssim', 'SSIM↑', 4)):
        start = next(i for i, line in enumerate(lines) if line.startswith(f'| {label} |'))
        end = next(
            (
                i
                for i in range(start + 1, len(lines))
                if not lines[i].startswith('| ') or lines[i].split('|')[1].strip()
            ),
            len(lines),
        )
        block = {line.split('|')[2].strip(): [c.strip() for c in line.split('|')[3:-1]] for line in lines[start:end]}
        for col_index, col in enumerate(table.datasets + [AVG]):
            vals = {r: table.value(metric, r, col) for r in ('Fixed', 'LossAgent')}
            if col == AVG:
                for r in vals:
                    assert vals[r] == pytest.approx(np.mean([table.scores[metric][r][d] for d in table.datasets]))
            best = min(vals, key=vals.get) if metric == 'niqe' else max(vals, key=vals.get)
            assert block[best][col_index] == f'**{vals[best]:.{dec}f}**'
            if f'{vals["Fixed"]:.{dec}f}' != f'{vals["LossAgent"]:.{dec}f}':
                other = 'Fixed' if best == 'LossAgent' else 'LossAgent'
                assert not block[other][col_index].startswith('**')
        if metric == 'niqe':  # the GT row is shown but never bold
            assert REF_ROW in block and not any(c.startswith('**') for c in block[REF_ROW])


def test_saved_images(run):
    _, _, out = run
    saved = sorted(p.relative_to(out / 'visualization').as_posix() for p in (out / 'visualization').rglob('*.png'))
    assert len(saved) == 8 and 'LossAgent/SetB/rocket.png' in saved
    assert cv2.imread(str(out / 'visualization' / 'Fixed' / 'SetA' / 'coffee.png')).shape == (GT_SIZE, GT_SIZE, 3)


def test_missing_checkpoint_is_one_line(tmp_path):
    opt = {
        'name': 'x',
        'scale': 4,
        'network_g': NET,
        'methods': {'Fixed': {'pretrain_network_g': 'nope/a.pth'}},
        'datasets': {'S': {'type': 'PairedImageDataset', 'dataroot_gt': str(tmp_path), 'dataroot_lq': str(tmp_path)}},
        'metrics': {'psnr': None},
    }
    (tmp_path / 'o.yml').write_text(yaml.safe_dump(opt))
    from lossagent_eval.benchmark import run_benchmark
    from lossagent_errors import CheckpointError

    with pytest.raises(CheckpointError) as err:
        run_benchmark(str(tmp_path / 'o.yml'), root=str(tmp_path))
    assert 'methods.Fixed.pretrain_network_g' in str(err.value) and 'nope/a.pth' in str(err.value)
    assert '\n' not in str(err.value)


@pytest.mark.parametrize('name', ['CISR_benchmark', 'RISR_benchmark', 'AIR_benchmark'])
def test_example_options_are_well_formed(name):
    """The shipped YAMLs parse, and name registered archs/datasets and known pyiqa metrics."""
    import lossagent_arch  # noqa: F401
    import lossagent_data  # noqa: F401
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY
    from pyiqa.default_model_configs import DEFAULT_CONFIGS
    from lossagent_eval.benchmark import load_options

    opt = load_options(str(ROOT / 'options' / 'test' / f'{name}.yml'))
    assert opt['name'] == name
    ARCH_REGISTRY.get(opt['network_g']['type'])
    for dopt in opt['datasets'].values():
        DATASET_REGISTRY.get(dopt['type'])
    for key, mopt in opt['metrics'].items():
        assert (mopt or {}).get('type', key) in DEFAULT_CONFIGS
    assert all(m.get('pretrain_network_g') for m in opt['methods'].values())


def test_lightning_style_promptir_checkpoint_loads_strictly(tmp_path):
    """PromptIR's release: weights under 'state_dict' with a 'net.' prefix (Lightning)."""
    import lossagent_arch  # noqa: F401
    from basicsr.utils.registry import ARCH_REGISTRY
    from lossagent_eval.checkpoint import load_checkpoint

    cfg = dict(
        dim=8,
        num_blocks=[1, 1, 1, 1],
        num_refinement_blocks=1,
        heads=[1, 2, 2, 4],
        prompt_dims=(8, 8, 16),
        prompt_sizes=(8, 4, 2),
    )
    torch.manual_seed(0)
    src = ARCH_REGISTRY.get('PromptIR')(**cfg)
    torch.save({'epoch': 1, 'state_dict': {'net.' + k: v for k, v in src.state_dict().items()}}, tmp_path / 'm.ckpt')
    dst = load_checkpoint(
        ARCH_REGISTRY.get('PromptIR')(**cfg), str(tmp_path / 'm.ckpt'), param_key='state_dict', strip_prefix='net.'
    )
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


@pytest.mark.parametrize(
    'change, message',
    [
        ({'metrics': {'nosuchmetric': None}}, "metrics.nosuchmetric: unknown pyiqa metric 'nosuchmetric'"),
        ({'metrics': {'niqe': {'labl': 'NIQE'}}}, 'metrics.niqe.labl: unknown option (did you mean `label`?)'),
        ({'methodz': {}}, 'methodz: unknown option (did you mean `methods`?)'),
        (
            {'datasets': {'S': {'type': 'SkimagePhotoDataset', 'images': ['coffee'], 'crop_sise': 96}}},
            'datasets.S.crop_sise: unknown option (did you mean `crop_size`?)',
        ),
    ],
)
def test_test_py_bad_options_are_one_line(tmp_path, change, message):
    opt = {
        'name': 'bad',
        'scale': 2,
        'network_g': NET,
        'methods': {'M': {'allow_random_init': True}},
        'datasets': {'S': {'type': 'SkimagePhotoDataset', 'images': ['coffee'], 'crop_size': 96}},
        'metrics': {'psnr': None},
        'path': {'results_root': str(tmp_path / 'results')},
    }
    opt.update(change)
    (tmp_path / 'o.yml').write_text(yaml.safe_dump(opt))
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'test.py'), '-opt', str(tmp_path / 'o.yml')],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'results').exists()  # nothing written


def test_test_py_yaml_syntax_error_names_file_line_and_column(tmp_path):
    (tmp_path / 'o.yml').write_text('name: x\nmethods: [a\n')
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'test.py'), '-opt', str(tmp_path / 'o.yml')],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and f'{tmp_path / "o.yml"}:3:1: YAML syntax error' in proc.stderr
