"""benchmarks/policy_study/pbt.py: Ray Tune's PBT on the study's task, a tiny population (2 members,
2 perturbations) through train.py. Skipped where Ray Tune is not installed (the optional extra
`pip install -e ".[pbt]"`, which `make test` installs). The clipping and the starts are tested without Ray."""

import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))

from policy_study import pbt  # noqa: E402


def test_explored_weights_are_clipped_into_the_trust_region_and_starts_are_matched_and_seeded():
    assert pbt.clip({'SSIM': 9.0, 'GAN': 1e-6, 'job': 'kept'}) == {'SSIM': 5.0, 'GAN': 0.001, 'job': 'kept'}
    starts = pbt.initial_weights(4, seed=9000)
    assert starts[0] == {'SSIM': 0.5, 'GAN': 0.01}  # member 0: the default weights
    assert starts == pbt.initial_weights(4, seed=9000) != pbt.initial_weights(4, seed=9001)
    assert all(0.05 <= s['SSIM'] <= 5.0 and 0.001 <= s['GAN'] <= 0.1 for s in starts)


def test_without_ray_the_arm_says_why_and_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, 'ray', None)  # import ray -> ImportError
    why = pbt.ray_missing()
    assert 'Ray Tune is not installed' in why and 'pip install -e ".[pbt]"' in why


def test_a_two_member_population_perturbs_twice_from_training_states(tmp_path):
    why = pbt.ray_missing()
    if why:
        pytest.skip(why)
    prefix = f'pbt_smoke_{uuid.uuid4().hex[:6]}'
    run, p = pbt.smoke_run(prefix)
    try:
        took = pbt.run_pbt(run, p, tmp_path, jobs=2, population=2)
        summary = json.loads((run.root / 'pbt.json').read_text())
        stages = summary['stages']
        assert sorted((s['from'], s['to']) for s in stages) == [(0, 2), (0, 2), (2, 4), (2, 4), (4, 6), (4, 6)]
        assert summary['training_iters'] == 12 and took[prefix]['cpu_s'] > 0
        for s in stages:  # every member's weights stay within x0.1 .. x10 of the defaults
            assert 0.05 <= s['weights']['SSIM'] <= 5.0 and 0.001 <= s['weights']['GAN'] <= 0.1
        # the later stages resumed from a training state (the project's own), with the member's weights
        later = [s for s in stages if s['from'] > 0]
        for s in later:
            log = (tmp_path / 'pbt' / prefix / 'logs' / f'{s["member"]}_{s["to"]}.log').read_text()
            assert f'iter: {s["from"]}.' in log
        # after each of the 2 perturbations the worse member trains on with explored weights (2 members:
        # the bottom quantile is one member, which copies the other's checkpoint and perturbs its weights)
        for before, after in ((2, 4), (4, 6)):
            done = {s['member']: s for s in stages if s['to'] == before}
            following = {s['member']: s for s in stages if s['to'] == after}
            loser = max(done, key=lambda m: done[m]['niqe'])
            assert following[loser]['weights'] != done[loser]['weights']
        assert run.checkpoint.stat().st_size > 1000
    finally:
        for path in ROOT.glob(f'experiments/{prefix}*'):
            shutil.rmtree(path, ignore_errors=True)
