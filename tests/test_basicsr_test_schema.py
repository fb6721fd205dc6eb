"""test.py on a plain BasicSR test option file (BasicSR's own test pipeline), --force_yml, and the log file
both schemas write in results/<name>/."""

import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import lossagent_compat  # noqa: F401
from basicsr.metrics import calculate_psnr
from lossagent_data.skimage_dataset import bicubic_pair, load_photo

ROOT = Path(__file__).resolve().parents[1]
DEMO_TEST = ROOT / 'options' / 'test' / 'demo_basicsr_test.yml'


def run_test_py(*args, timeout=300):
    return subprocess.run(
        [sys.executable, str(ROOT / 'test.py'), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def unique_name():
    name = f'pytest_basicsr_{uuid.uuid4().hex[:8]}'
    yield name
    shutil.rmtree(ROOT / 'results' / name, ignore_errors=True)


def test_basicsr_test_file_on_offline_photo_folders(tmp_path, unique_name):
    """A BasicSR test file (two PairedImageDatasets of real photos) through BasicSR's test_pipeline; its
    PSNR equals BasicSR's calculate_psnr on the saved images."""
    for folder, names in (('SetA', ('coffee', 'chelsea')), ('SetB', ('camera',))):
        for name in names:
            gt, lq = bicubic_pair(load_photo(name)[:96, :128], 4)
            for sub, img in (('GT', gt), ('LR', lq)):
                (tmp_path / folder / sub).mkdir(parents=True, exist_ok=True)
                png = (img[:, :, ::-1] * 255).round().astype('uint8')
                cv2.imwrite(str(tmp_path / folder / sub / f'{name}.png'), png)
    opt = yaml.safe_load(DEMO_TEST.read_text())
    opt['name'] = unique_name
    opt['num_gpu'] = 0
    opt['datasets'] = {
        f'test_{i}': {
            'name': folder,
            'type': 'PairedImageDataset',
            'io_backend': {'type': 'disk'},
            'dataroot_gt': str(tmp_path / folder / 'GT'),
            'dataroot_lq': str(tmp_path / folder / 'LR'),
        }
        for i, folder in enumerate(('SetA', 'SetB'), 1)
    }
    opt['val']['suffix'] = 'x4'
    path = tmp_path / 'basicsr_test.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    proc = run_test_py('-opt', str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = ROOT / 'results' / unique_name
    logs = list(results.glob(f'test_{unique_name}_*.log'))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert 'Testing SetA' in log and 'Testing SetB' in log
    logged = {m.group(1): float(m.group(2)) for m in re.finditer(r'Validation (\w+)\n\t # psnr: ([\d.]+)', log)}
    for folder, names in (('SetA', ('coffee', 'chelsea')), ('SetB', ('camera',))):
        psnrs = [
            calculate_psnr(
                cv2.imread(str(results / 'visualization' / folder / f'{n}_x4.png')),
                cv2.imread(str(tmp_path / folder / 'GT' / f'{n}.png')),
                crop_border=4,
                test_y_channel=True,
            )
            for n in names
        ]
        assert logged[folder] == pytest.approx(np.mean(psnrs), abs=1e-4)
        assert logged[folder] > 25  # the shipped L1 network restores real photos


def test_shipped_demo_basicsr_test_file_with_force_yml(unique_name):
    proc = run_test_py('-opt', str(DEMO_TEST), '--force_yml', f'name={unique_name}', 'val:save_img=false')
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = ROOT / 'results' / unique_name
    assert not list(results.rglob('*.png'))  # save_img forced off
    log = next(results.glob('test_*.log')).read_text()
    psnr = float(re.search(r'# psnr: ([\d.]+)', log).group(1))
    assert 30 < psnr < 45, psnr  # measured 36.27 dB on coffee/clock/moon


def test_table_schema_writes_a_log_and_takes_force_yml(tmp_path, unique_name):
    opt = {
        'name': 'ignored',
        'scale': 4,
        'num_gpu': 0,
        'network_g': yaml.safe_load(DEMO_TEST.read_text())['network_g'],
        'methods': {'Demo start': {'pretrain_network_g': 'experiments/pretrained_models/demo_swinir_x4_l1.pth'}},
        'datasets': {'Photos': {'type': 'SkimagePhotoDataset', 'images': ['coffee'], 'crop_size': 96}},
        'metrics': {'psnr': {'crop_border': 4}},
        'val': {'gt_row': True},
    }
    path = tmp_path / 'table.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    proc = run_test_py('-opt', str(path), '--force_yml', f'name={unique_name}', 'val:gt_row=false')
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = ROOT / 'results' / unique_name
    log = next(results.glob(f'test_{unique_name}_*.log')).read_text()
    assert 'Demo start on Photos (1 images): psnr' in log and '| Demo start |' in log
    assert '| GT (Ref.) |' not in (results / f'{unique_name}.md').read_text()


def test_force_yml_on_a_missing_section_is_one_line(tmp_path):
    proc = run_test_py('-opt', str(DEMO_TEST), '--force_yml', 'nosuch:key=1')
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f'test.py: error: --force_yml nosuch:key=1: nosuch is not in {DEMO_TEST}'
