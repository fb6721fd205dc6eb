"""benchmarks/study.py end to end in its --smoke size: the grid, the policy arms (paired, its
random-signs control, lookahead), a schedule, test.py on a selection photo, the comparisons, the
cost axis and its plot, the CSV; and the plan's arms, seeds and photo sets without training."""

import csv
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))

from policy_study import plan as study_plan  # noqa: E402


def test_study_smoke(tmp_path):
    prefix = f'study_smoke_{uuid.uuid4().hex[:6]}'
    out = tmp_path / 'study'
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / 'benchmarks' / 'study.py'), '--smoke', '--out', str(out), '--prefix', prefix],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ),
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        md = (out / 'study.md').read_text()
        table = md.split('### NIQE gain over the baseline on the selection photos (not the headline')[1].split('###')[0]
        rows = [[c.strip() for c in line.split('|')[1:-1]] for line in table.splitlines() if line.startswith('| ')][1:]
        assert [r[:2] for r in rows] == [
            ['Adaptive-paired (NIQE)', 'Fixed'],
            ['Paired, random signs (NIQE)', 'Fixed'],
            ['Adaptive-paired (NIQE)', 'Paired, random signs (NIQE)'],
            ['Lookahead (NIQE)', 'Fixed'],
            [rows[4][0], 'Fixed'],
            [rows[5][0], rows[5][1]],
        ]
        assert rows[4][0].startswith('Oracle fixed (') and rows[5][0].startswith('Best schedule (')
        assert '### Cost axis' in md and '### The grid of fixed weightings' in md and '### PSNR+NIQE (descriptive' in md
        cost = md.split('### Cost axis')[1].split('###')[0]
        assert '| Oracle fixed (grid of 4) | 4.00x |' in cost and '| Fixed | 1.00x | +0.00 |' in cost
        lookahead = next(line for line in cost.splitlines() if line.startswith('| Lookahead'))
        # one round (at iteration 2; the boundary at 4 ends training): (3 - 1) candidates x 1 iteration over 4
        assert '| 1.50x |' in lookahead
        with open(out / 'study.csv', newline='') as f:
            runs = list(csv.DictReader(f))
        assert {r['kind'] for r in runs} == {'sweep', 'policy', 'schedule'} and len(runs) == 8
        assert all(float(r['J_niqe_selection']) == -float(r['niqe_selection']) for r in runs)
        assert all(float(r['cpu_s']) > 0 for r in runs)
        report = json.loads((out / 'study.json').read_text())
        assert report['headline_photos'] == 'selection' and report['profile']['photo_sets'] == ['selection']
        assert len(report['comparisons']) == 6 and report['estimate']['runs'] == 8
        assert (out / 'plots' / 'quality_vs_compute.png').stat().st_size > 1000
        options = {p.stem: p for p in (out / 'options').glob('*.yml')}
        evaluation = options[f'{prefix}_eval_s0'].read_text()
        assert 'coffee' in evaluation and 'kodim' not in evaluation and 'grace_hopper' not in evaluation
        records = [
            json.loads(line)
            for line in (ROOT / 'experiments' / f'{prefix}_s0_lookahead' / 'agent' / 'decisions.jsonl').open()
        ]
        assert records[1]['probes'] and records[1]['scored_network'] == 'ema'
    finally:
        for path in ROOT.glob(f'experiments/{prefix}_*'):
            shutil.rmtree(path, ignore_errors=True)


def test_the_full_plan_follows_the_protocol():
    p = study_plan.PROFILES['full']
    runs = study_plan.plan(p, arms=['paired', 'paired_random', 'lookahead', 'llm', 'hybrid'])
    by = lambda **m: [r for r in runs if all(getattr(r, k) == v for k, v in m.items())]  # noqa: E731
    assert len(by(kind='sweep', setting=(1.0, 1.0))) == 24 and len(by(policy='paired')) == 24
    assert len(by(policy='paired_random')) == len(by(policy='lookahead')) == 10
    assert len(by(kind='sweep')) == 24 + 8 * 10 and len(by(kind='schedule')) == 2 * 10
    assert {r.seed for r in by(policy='llm')} == {r.seed for r in by(policy='hybrid')} == set(range(10))
    cut = study_plan.plan({**p, 'cut_seeds': {'grid': 7, 'llm': 5}}, arms=['llm'])  # the protocol's cuts
    assert len([r for r in cut if r.kind == 'sweep']) == 24 + 8 * 7 and {
        r.seed for r in cut if r.kind == 'policy'
    } == set(range(5))
    seeds = {(r.policy, r.seed): r.opt['agent']['policy_seed'] for r in runs if r.kind == 'policy'}
    assert seeds['paired', 3] == 2003 and seeds['paired_random', 3] == 3003 and seeds['lookahead', 3] == 4003
    assert len(set(seeds.values())) == len(seeds)  # no two runs share probe directions
    random_signs = by(policy='paired_random', seed=0)[0].opt['agent']['policy']
    assert random_signs == {**study_plan.PAIRED, 'signs': 'random'}
    lookahead = by(policy='lookahead', seed=0)[0].opt['agent']['policy']
    assert lookahead['probe_network'] == 'ema' and lookahead['sigma_adapt'] is False
    schedule = by(kind='schedule', policy='gan_down', seed=0)[0].opt
    assert schedule['train']['losses']['GAN']['loss_weight'] == 0.01
    assert schedule['agent']['policy'] == {'type': 'schedule', 'switch_at': 150, 'then': {'GAN': 0.001}}
    assert [r.extra['pbt_seed'] for r in study_plan.pbt_runs(p)] == [9000, 9001]
    # the final-test photos are evaluated in the full study only
    assert 'kodim03' in study_plan.eval_options(p, 0, runs, Path('/tmp'))['datasets']
    for profile in ('quick', 'smoke'):
        assert study_plan.PROFILES[profile]['photo_sets'] == ['selection']
    estimate = study_plan.estimate(p, runs + study_plan.pbt_runs(p))
    assert estimate['total_min'] > 0 and estimate['runs'] == len(runs) + 2


def test_an_arm_whose_policy_is_missing_is_skipped_with_its_reason(monkeypatch):
    monkeypatch.setitem(study_plan.ARMS, 'ghost', study_plan.Arm(99, 'Ghost', {'type': 'no_such_policy'}))
    monkeypatch.setitem(study_plan.ARMS, 'bad', study_plan.Arm(98, 'Bad', {'type': 'adaptive', 'signs': 'maybe'}))
    arms, skipped = study_plan.policy_arms({'arms': ['paired', 'ghost', 'bad']})
    assert arms == ['paired']
    assert "'no_such_policy' is not registered" in skipped['ghost'] and 'agent.policy.signs' in skipped['bad']
