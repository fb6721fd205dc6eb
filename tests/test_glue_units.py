"""Unit tests of the pieces that glue the agent to BasicSR (no training loop)."""

import json
import os

import pytest
import torch

import lossagent_compat  # noqa: F401
import lossagent_losses  # noqa: F401
from lossagent_errors import OptionError
from agent import StageRecord
from agent.decision_log import DecisionLog, read_records
from lossagent_errors import MissingWeightsError
from lossagent_models.loss_repository import LossRepository


# ---- decision log -------------------------------------------------------------------------
def test_decision_log_skips_a_torn_line_and_marks_superseded(tmp_path):
    log = DecisionLog(tmp_path / 'agent' / 'decisions.jsonl')
    for it in (0, 5, 10, 15):
        log.append(
            StageRecord(
                it // 5,
                it,
                {'L1': 1.0},
                {'NIQE': [float('nan') if it == 5 else 1.0]},
                weights_after={'L1': 1.0},
                applied_iteration=it + 1,
            )
        )
    with open(log.path, 'a') as f:
        f.write('{"stage": 4, "iteration": 2')  # a crash in the middle of a write
    assert [r.iteration for r in read_records(log.path)] == [0, 5, 10, 15]
    assert list(read_records(log.path))[1].scores['NIQE'] == [None]  # NaN is stored as null, never as NaN
    assert log.supersede_after(5) == 2
    assert [r.iteration for r in read_records(log.path)] == [0, 5]
    everything = list(read_records(log.path, include_superseded=True))
    assert [r.superseded for r in everything] == [False, False, True, True]
    assert all(line.endswith('}') for line in log.path.read_text().splitlines())  # torn tail removed


def test_stage_record_round_trips_and_reads_older_forms():
    from agent import ExpertInfo

    record = StageRecord(
        2,
        200,
        {'L1': 1.0, 'GAN': 0.01},
        {'NIQE': [4.0, None], 'Critic': ['blurry', None]},
        experts=[ExpertInfo('NIQE', True), ExpertInfo('Critic', False, 'text')],
        images=['a', 'b'],
        policy='llm',
        fallback=None,
        eval_s=0.5,
        latency_s=1.25,
        info={'ok': 2},
        weights_after={'L1': 0.9, 'GAN': 0.02},
        applied_iteration=201,
    )
    line = record.to_dict()
    assert line['mean_scores'] == {'NIQE': 4.0, 'Critic': None}
    assert line['directions'] == {'NIQE': 'lower', 'Critic': 'higher'} and line['valid'] is True
    assert StageRecord.from_dict(json.loads(json.dumps(line))) == record
    # the compact history entry of older training states, and a line written before `experts`
    old = StageRecord.from_dict({'stage': 1, 'iteration': 5, 'weights': {'L1': 1}, 'scores': {'NIQE': [3]}})
    assert old.weights == {'L1': 1.0} and old.policy == 'initial' and old.experts == []
    legacy = StageRecord.from_dict({**line, 'experts': None})
    assert legacy.experts == record.experts  # rebuilt from `directions` (text: all scores are text)


# ---- loss repository ----------------------------------------------------------------------
def test_repository_sets_weights_in_place_and_on_the_right_attribute():
    repo = LossRepository(
        {'losses': {'L1': {'type': 'L1Loss', 'loss_weight': 1.0}, 'SSIM': {'type': 'SSIMLoss', 'loss_weight': 0.5}}},
        torch.device('cpu'),
    )
    assert repo.names == ['L1', 'SSIM'] and repo.get_weights() == {'L1': 1.0, 'SSIM': 0.5}
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    total, terms = repo.generator_loss(x, y)
    repo.set_weights({'L1': 2.0, 'SSIM': 0.0})
    total2, terms2 = repo.generator_loss(x, y)
    assert terms2['l_g_L1'] == pytest.approx(2 * terms['l_g_L1'])
    assert terms2['l_g_SSIM'] == 0
    with pytest.raises(OptionError, match='3 weights for 2 losses'):
        repo.set_initial_weights([1, 2, 3])


def test_srgan_keys_become_a_repository():
    repo = LossRepository(
        {
            'pixel_opt': {'type': 'MSELoss', 'loss_weight': 1.0},
            'gan_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.1},
        },
        torch.device('cpu'),
    )
    assert repo.names == ['MSE', 'GAN'] and repo.adversarial.name == 'GAN'
    with pytest.raises(OptionError, match='not both'):
        LossRepository({'losses': {'L1': {'type': 'L1Loss'}}, 'pixel_opt': {'type': 'L1Loss'}}, 'cpu')


def test_perceptual_loss_without_vgg_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no experiments/pretrained_models/vgg19-dcbb9e9d.pth here
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    with pytest.raises(MissingWeightsError, match='vgg19-dcbb9e9d.pth'):
        LossRepository(
            {
                'losses': {
                    'Perceptual': {'type': 'PerceptualLoss', 'layer_weights': {'conv5_4': 1}, 'perceptual_weight': 0.1}
                }
            },
            torch.device('cpu'),
        )


# ---- experts ------------------------------------------------------------------------------
def test_iqa_experts_match_pyiqa_and_use_the_ground_truth():
    import pyiqa
    from lossagent_data.skimage_dataset import load_photo
    from lossagent_hook.experts import build_experts

    photo = torch.from_numpy(load_photo('coffee')[:192, :192]).permute(2, 0, 1)
    noisy = (photo + 0.05 * torch.randn_like(photo, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    experts = build_experts(
        {'NIQE': {'metric': 'niqe'}, 'PSNR': {'metric': 'psnr'}, 'Sharp': {'metric': 'niqe', 'lower_better': False}},
        'cpu',
    )
    assert [(e.name, e.lower_better) for e in experts] == [('NIQE', True), ('PSNR', False), ('Sharp', False)]
    niqe, psnr, _ = (e.score([noisy, photo], [photo, photo], {}) for e in experts)
    direct = pyiqa.create_metric('niqe')
    assert niqe[0] == pytest.approx(float(direct(noisy[None])), rel=1e-6)
    assert psnr[1] > 60  # identical images (pyiqa caps PSNR instead of returning inf)
    assert 20 < psnr[0] < 40


def test_unknown_expert_type_is_an_option_error():
    from lossagent_hook.experts import build_experts

    with pytest.raises(OptionError, match="agent.experts.X.type: unknown expert type 'oracle'"):
        build_experts({'X': {'type': 'oracle'}}, 'cpu')


# ---- launcher arguments -------------------------------------------------------------------
def test_old_launcher_local_rank_forms_are_accepted(monkeypatch):
    from lossagent_runtime.basicsr_fixes import normalize_launcher_args

    monkeypatch.delenv('LOCAL_RANK', raising=False)
    assert normalize_launcher_args(['train.py', '--local-rank=1', '-opt', 'x.yml']) == [
        'train.py',
        '--local_rank=1',
        '-opt',
        'x.yml',
    ]
    assert os.environ['LOCAL_RANK'] == '1'
    assert normalize_launcher_args(['t.py', '--local_rank', '3']) == ['t.py', '--local_rank', '3']


def test_rng_state_round_trips_through_json():
    import random
    import numpy as np
    from lossagent_models.rng_state import host_rng_state, restore_host_rng_state

    state = json.loads(json.dumps(host_rng_state()))
    expected = (random.random(), np.random.rand())
    restore_host_rng_state(state)
    assert (random.random(), np.random.rand()) == expected


# ---- preflight on the paper's configs -----------------------------------------------------
def paper_configs():
    from training import ROOT

    return sorted(p for p in (ROOT / 'options' / 'train').glob('*.yml') if not p.name.startswith('demo_'))


@pytest.mark.parametrize('path', paper_configs(), ids=lambda p: p.stem)
def test_paper_configs_pass_the_name_checks_and_stop_at_missing_data(path):
    """Every type name resolves (as BasicSR's registry.get does); what is missing here is data."""
    import yaml
    import lossagent_arch  # noqa: F401
    import lossagent_data  # noqa: F401
    import lossagent_models  # noqa: F401
    from basicsr.utils.options import ordered_yaml
    from lossagent_runtime.preflight import check_options

    opt = yaml.load(path.read_text(), Loader=ordered_yaml()[0])
    opt['auto_resume'] = False
    with pytest.raises(OptionError) as err:
        check_options(opt)
    assert str(err.value).startswith(('datasets.', 'path.pretrain_network', 'agent.dataset.')), str(err.value)


def test_the_direction_table_agrees_with_pyiqa():
    from pyiqa.default_model_configs import DEFAULT_CONFIGS
    from agent.directions import LOWER_BETTER
    from lossagent_iqa import lower_is_better

    for name, lower in LOWER_BETTER.items():
        assert name in DEFAULT_CONFIGS, name
        assert bool(DEFAULT_CONFIGS[name].get('lower_better', False)) == lower, name
        assert lower_is_better(name) == lower
    assert LOWER_BETTER['pieapp'] and not LOWER_BETTER['ahiq'] and not LOWER_BETTER['ckdn']
