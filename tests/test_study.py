"""benchmarks/study.py end to end in its --smoke size: the sweep, the policies, the stage-signal
diagnostic, test.py on a held-out photo, the headroom and gain tables, the CSV and the plots."""
import csv
import json
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
                               '--prefix', prefix], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert 'llm policy skipped' in proc.stdout
        md = (out / 'study.md').read_text()
        sweep = md.split('### Fixed weightings on NIQE (the sweep)')[1].split('###')[0]
        assert sweep.count('\n| ') == 1 + 4 and '(oracle)**' in sweep  # header + 2x2 settings, one oracle
        gains = md.split('### NIQE: gain over Fixed')[1].split('###')[0]
        methods = [line.split('|')[1].strip() for line in gains.splitlines() if line.startswith('| ')][1:]
        assert methods == ['Oracle fixed', 'Random', 'Adaptive-ES (NIQE)', 'Lookahead (NIQE)']
        assert '### The stage signal with fixed weights' in md and '### What the lookahead costs' in md
        with open(out / 'study.csv', newline='') as f:
            rows = list(csv.DictReader(f))
        assert {r['kind'] for r in rows} == {'sweep', 'policy'} and len(rows) == 4 + 3
        assert all(float(r['J_niqe']) == -float(r['niqe']) for r in rows)
        report = json.loads((out / 'study.json').read_text())
        assert {f['method'] for f in report['findings']} == set(methods[1:])
        assert report['wall_s'] > 0 and len(report['run_wall_s']) == 8
        for name in ('compare_weights.png', f'{prefix}_s0_lookahead_niqe.png', f'{prefix}_s0_fixed_default.png'):
            assert (out / 'plots' / name).stat().st_size > 1000
        records = [json.loads(line) for line in
                   (ROOT / 'experiments' / f'{prefix}_s0_lookahead_niqe' / 'agent' / 'decisions.jsonl').open()]
        assert records[1]['probes'] and records[1]['scored_network'] == 'ema'
    finally:
        for path in ROOT.glob(f'experiments/{prefix}_*'):
            shutil.rmtree(path, ignore_errors=True)
