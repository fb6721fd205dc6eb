"""agent/objective.py with exact numbers: the robust scale, stages 1, 2 and 10, the history no longer
counted into the scale, the floor, and a tiny change scoring differently from a large one."""

import math

import pytest

from agent.objective import SCALE_FLOOR, expert_scale, robust_scale, stage_objective
from agent.record import ExpertInfo, History, ProbeResult, StageRecord

NIQE = ExpertInfo('NIQE', lower_better=True)
PSNR = ExpertInfo('PSNR', lower_better=False)
W = {'L1': 1.0, 'GAN': 0.01}


def rec(stage, niqe, psnr=None):
    scores = {'NIQE': list(niqe)}
    if psnr is not None:
        scores['PSNR'] = list(psnr)
    return StageRecord(stage, 50 * stage, dict(W), scores)


def shifted(values, by):
    return [v + by for v in values]


BASE = [10.0, 12.0, 14.0, 16.0]  # median 13, |deviations| 3 1 1 3: MAD 2


def test_robust_scale_is_mad_times_1_4826_and_ignores_an_outlier():
    assert robust_scale(BASE) == pytest.approx(2 * 1.4826, abs=1e-12)
    assert robust_scale([1.0, 2.0, 3.0, 4.0, 1000.0]) == pytest.approx(1.4826, abs=1e-12)  # sd would be 446
    assert robust_scale([5.0]) == 0.0 and robust_scale([]) == 0.0
    assert robust_scale([1.0, float('nan'), 3.0, None]) == pytest.approx(1.4826, abs=1e-12)


def gains_at(stage, offsets, experts=(NIQE,), psnr=None):
    records = [rec(k, shifted(BASE, d), None if psnr is None else psnr[k]) for k, d in enumerate(offsets)]
    history = History(records)
    return stage_objective(records[stage], records[0], list(experts), history, normalize='zscore')


def test_stage_1_exact():
    # scale = robust sd of stage 0's 4 images / sqrt(4) = 2.9652 / 2 = 1.4826; NIQE 1 point better
    assert expert_scale('NIQE', rec(0, BASE)) == pytest.approx(1.4826, abs=1e-12)
    f, gains = gains_at(1, [0.0, -1.0])
    assert f == pytest.approx(0.674490759, abs=1e-9) and gains == {'NIQE': f}


def test_stage_2_exact_and_the_paired_changes_share_one_scale():
    f2, _ = gains_at(2, [0.0, -1.0, -3.0])
    f1, _ = gains_at(1, [0.0, -1.0, -3.0])
    assert f2 == pytest.approx(3 / 1.4826, abs=1e-12) == pytest.approx(2.023472279, abs=1e-9)
    # what the paired strategy computes at stage 2 (f2 - f1) and remembered from stage 1 (f1 - f0):
    # on one scale whatever the history's length, so their difference means what it says
    assert f2 - f1 == pytest.approx(2 * 0.674490759, abs=1e-9)
    assert gains_at(1, [0.0, -1.0])[0] == f1


def test_stage_10_exact_a_diverged_stage_changes_nothing_else():
    offsets = [0.0, -0.5, -1.0, -1.5, -2.0, -2.5, -3.0, -3.5, 40.0, -4.0, -4.5]  # stage 8 diverged
    f, _ = gains_at(10, offsets)
    assert f == pytest.approx(4.5 / 1.4826, abs=1e-12) == pytest.approx(3.035208418, abs=1e-9)
    assert gains_at(8, offsets)[0] == pytest.approx(-40 / 1.4826, abs=1e-12)
    # two experts: PSNR per image 28 30 32 40 at stage 0 (median 31, |dev| 3 1 1 9: MAD 2, scale 1.4826),
    # 0.1 dB better per stage on every image; the objective is the mean of the two gains
    psnr = [[28 + 0.1 * k, 30 + 0.1 * k, 32 + 0.1 * k, 40 + 0.1 * k] for k in range(11)]
    f2, gains = gains_at(10, offsets, (NIQE, PSNR), psnr)
    assert gains['PSNR'] == pytest.approx(1.0 / 1.4826, abs=1e-9) and gains['NIQE'] == pytest.approx(f, abs=1e-12)
    assert f2 == pytest.approx((4.5 + 1.0) / 1.4826 / 2, abs=1e-12)


def test_history_and_extra_do_not_change_the_result_with_several_images():
    """The old pool counted the record and the reference twice; the scale is now the reference's own."""
    ref, now = rec(0, BASE), rec(1, shifted(BASE, -1.0))
    alone = stage_objective(now, ref, [NIQE])
    assert stage_objective(now, ref, [NIQE], [ref, now] * 3, extra=[now, ref, rec(5, [99.0] * 4)]) == alone


@pytest.mark.parametrize('stages', [1, 2])
def test_a_tiny_and_a_large_change_give_different_gains(stages):
    """The bug this module had: with two stages every gain was exactly +-2 whatever its size."""

    def gain(change):
        return (
            gains_at(stages, [0.2 * k for k in range(stages)] + [0.2 * (stages - 1) - change])[0]
            - gains_at(stages - 1, [0.2 * k for k in range(stages)])[0]
        )

    tiny, large = gain(0.001), gain(3.0)
    assert tiny == pytest.approx(0.001 / 1.4826, abs=1e-12) and large == pytest.approx(3.0 / 1.4826, abs=1e-12)
    assert abs(tiny) != 2.0 and abs(large) != 2.0
    assert gain(-3.0) < 0 < gain(3.0)


def test_the_floor_when_every_image_scores_the_same():
    ref, now = rec(0, [8.0] * 4), rec(1, [7.0] * 4)
    assert expert_scale('NIQE', ref) == pytest.approx(SCALE_FLOOR * 8.0, abs=1e-15)
    assert stage_objective(now, ref, [NIQE], History([ref, now]))[0] == pytest.approx(125.0, rel=1e-12)
    assert expert_scale('NIQE', rec(0, [0.2] * 3)) == pytest.approx(1e-3, abs=1e-15)  # level < 1: 1e-3
    assert expert_scale('NIQE', rec(0, [None])) == pytest.approx(1e-3, abs=1e-15)  # no valid image


def test_one_image_falls_back_to_the_stage_means_each_counted_once():
    one = [rec(k, [v]) for k, v in enumerate([13.0, 12.0, 10.0])]
    # two stages: no spread known yet, the floor (1e-3 x 13)
    assert stage_objective(one[1], one[0], [NIQE], one[:2])[0] == pytest.approx(1 / 0.013, rel=1e-12)
    # three stage means 13 12 10: median 12, |dev| 1 0 2, MAD 1: scale 1.4826, however often each is passed
    for pool in (one, one * 2 + [one[2], one[0]]):
        assert stage_objective(one[2], one[0], [NIQE], pool)[0] == pytest.approx(3 / 1.4826, abs=1e-12)
    # a lookahead's candidates count in the pool; as_record shares the candidate's scores: counted once
    probes = [ProbeResult(dict(W), {'NIQE': [v]}) for v in (11.0, 9.0)]
    values = [stage_objective(p.as_record(one[2]), one[2], [NIQE], one, extra=probes)[0] for p in probes]
    # stage means 13 12 10 11 9: median 11, |dev| 2 1 1 0 2: MAD 1
    assert values == pytest.approx([-1 / 1.4826, 1 / 1.4826], abs=1e-12)


def test_lookahead_candidates_share_the_boundary_scale():
    boundary = rec(1, BASE)
    history = History([rec(0, shifted(BASE, 1.0)), boundary])
    probes = [ProbeResult(dict(W), {'NIQE': shifted(BASE, d)}) for d in (0.0, -1.0, 2.0)]
    values = [stage_objective(p.as_record(boundary), boundary, [NIQE], history, extra=probes)[0] for p in probes]
    assert values == pytest.approx([0.0, 1 / 1.4826, -2 / 1.4826], abs=1e-12)


def test_relative_normalisation_and_invalid_scores():
    ref, now = rec(0, [10.0, None, 20.0]), rec(1, [9.0, 5.0, float('nan')])
    f, gains = stage_objective(now, ref, [NIQE], History([ref, now]), normalize='relative')
    assert f == pytest.approx(0.1, abs=1e-12)  # only image 0 is valid in both: (10 - 9) / 10
    f, _ = stage_objective(rec(1, [None]), rec(0, [None]), [NIQE], normalize='zscore')
    assert f is None and not math.isnan(SCALE_FLOOR)
