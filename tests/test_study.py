"""benchmarks/study.py end to end in its --smoke size: pre-training, fixed/random/adaptive runs,
test.py on a held-out photo, the mean ± std table, the paired table and the weight-curve plots."""
import csv
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_study_smoke(tmp_path):
    prefix = f'study_smoke_{uuid.uuid4().hex[:6]}'
    out = tmp_path / 'study'
    env = {k: v for k, v in os.environ.items() if k != 'LOSSAGENT_LLM_URL'}
    try:
        proc = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'study.py'), '--smoke', '--out', str(out),
                               '--prefix', prefix], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert 'llm policy skipped' in proc.stdout

        methods = ['Bicubic', 'Pre-trained (L1)', 'Fixed', 'Random', 'Adaptive-ES (NIQE)', 'Adaptive-paired (NIQE)']
        md = (out / 'study_table.md').read_text()
        header = next(line for line in md.splitlines() if line.startswith('| Metrics'))
        assert header == '| Metrics | Methods | coffee | Avg. |'
        main_table = md.split('## Paired differences')[0]
        blocks, current = {}, None
        for line in main_table.splitlines()[1:]:
            if not line.startswith('| ') or line.startswith('| Metrics') or '---' in line:
                continue
            label, method = (cell.strip() for cell in line.split('|')[1:3])
            if label:
                current = blocks.setdefault(label, [])
            current.append(method)
        assert list(blocks) == ['NIQE↓', 'PSNR↑', 'SSIM↑', 'Objective NIQE (rel. gain, %)↑']
        assert blocks['NIQE↓'] == methods + ['GT (Ref.)']
        for block in ('PSNR↑', 'SSIM↑', 'Objective NIQE (rel. gain, %)↑'):
            assert blocks[block] == methods
        assert '## Paired differences against Fixed' in md
        paired = md.split('## Paired differences')[1]
        assert '| Adaptive-ES (NIQE) |' in paired and '| Adaptive-paired (NIQE) |' in paired

        with open(out / 'study_table.csv', newline='') as f:
            table = list(csv.DictReader(f))
        assert {r['method'] for r in table if r['block'] == 'psnr'} == set(methods)
        assert {r['column'] for r in table} == {'coffee', 'Avg.'}
        for r in table:
            assert float(r['mean']) == float(r['mean'])  # finite numbers, no NaN
        for policy in ('fixed', 'random', 'adaptive_niqe', 'adaptive-paired_niqe'):
            assert (out / 'plots' / f'{prefix}_s0_{policy}.png').stat().st_size > 1000
        assert (out / 'study_report.json').exists()
    finally:
        for path in ROOT.glob(f'experiments/{prefix}_*'):
            shutil.rmtree(path, ignore_errors=True)
