"""Every option file under options/ parses with BasicSR's own loader, says what the paper says, and builds.

Train configs: the paper's numbers are asserted on the file as written; then a test-only override
(`shrink`) keeps every type but makes networks tiny, points `datasets/...` at generated folders of the
same layout (tmp), swaps what needs downloadable weights (VGG/LPIPS losses -> L1Loss under the same
repository name and weight; a PyIQALoss of CLIPIQA -> of NIQE; MANIQA/CLIPIQA/Q-Align experts -> NIQE
under the same expert name) and points the llm policy and VLM critics at a local OpenAI-compatible stub.
`basicsr.models.build_model` then builds the model on CPU as `train.py` would (path keys as `parse_options`
sets them), the training set and the agent's validation set are built, and one training iteration runs
through a stage boundary.

Test configs: the schema, metric names, datasets on generated folders, published networks, and
checkpoints that are either a release under experiments/pretrained_models/ or a train config's run.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import lossagent_compat  # noqa: F401  (before basicsr)
import lossagent_arch  # noqa: F401
import lossagent_data  # noqa: F401
import lossagent_losses  # noqa: F401
import lossagent_models  # noqa: F401
import lossagent_eval.val_metrics  # noqa: F401  (calculate_iqa, the RISR files' val metric)
from basicsr.utils.options import ordered_yaml

ROOT = Path(__file__).resolve().parents[1]
TRAIN = sorted((ROOT / 'options' / 'train').glob('*.yml'))
TEST = sorted((ROOT / 'options' / 'test').glob('*.yml'))
PAPER_TRAIN = [p for p in TRAIN if p.stem.split('_')[0] in ('CISR', 'RISR', 'AIR')]
DATASETS_README = (ROOT / 'datasets' / 'README.md').read_text()
REPRODUCE = (ROOT / 'docs' / 'reproduce.md').read_text()

LLM_URL = 'http://127.0.0.1:8000/v1'
LLM_MODEL = 'meta-llama/Meta-Llama-3-8B-Instruct'
OBJECTIVES = {  # file-name objective -> {expert name: (pyiqa metric, lower is better)}
    'niqe': {'NIQE': ('niqe', True)},
    'maniqa': {'MANIQA': ('maniqa', False)},
    'clipiqa': {'CLIPIQA': ('clipiqa', False)},
    'qalign': {'Q-Align': ('qalign', False)},
    'psnr_qalign': {'Q-Align': ('qalign', False), 'PSNR': ('psnr', False)},
}
AS_LOSS = {'clipiqa': 'CLIPIQA', 'niqe': 'NIQE'}  # Table 9: objective -> repository name of its PyIQALoss
TASKS = {  # paper Table 2 and Appendix A.1
    'CISR': dict(scale=4, stage=5000, total=100000, batch=32, weights={'L1': 1.0, 'Perceptual': 0.1, 'GAN': 0.01}),
    'RISR': dict(scale=4, stage=5000, total=200000, batch=32, weights={'L1': 1.0, 'Perceptual': 0.1, 'GAN': 0.01}),
    'AIR': dict(scale=1, stage=2500, total=100000, batch=16, weights={'L1': 1.0, 'Perceptual': 0.1, 'LPIPS': 1.0}),
}
M5_WEIGHTS = {'L1': 1.0, 'MSE': 1.0, 'Perceptual': 0.1, 'GAN': 0.01, 'LPIPS': 1.0}
PUBLISHED = {  # published sizes (SPEC.md; the authors' option files)
    'SwinIR': dict(
        embed_dim=180,
        depths=[6] * 6,
        num_heads=[6] * 6,
        window_size=8,
        img_size=64,
        mlp_ratio=2,
        upscale=4,
        resi_connection='1conv',
    ),
    'HAT': dict(
        embed_dim=144,
        depths=[6] * 6,
        num_heads=[6] * 6,
        window_size=16,
        compress_ratio=24,
        squeeze_factor=24,
        conv_scale=0.01,
        overlap_ratio=0.5,
        mlp_ratio=2,
        upscale=4,
        upsampler='pixelshuffle',
    ),
    'MambaIRv2': dict(
        embed_dim=48,
        depths=[5] * 4,
        num_heads=[4] * 4,
        window_size=16,
        d_state=8,
        inner_rank=32,
        num_tokens=64,
        convffn_kernel_size=5,
        mlp_ratio=1.0,
        upscale=4,
        upsampler='pixelshuffledirect',
    ),
    'PromptIR': dict(
        dim=48,
        num_blocks=[4, 6, 6, 8],
        num_refinement_blocks=4,
        heads=[1, 2, 4, 8],
        ffn_expansion_factor=2.66,
        bias=False,
        LayerNorm_type='WithBias',
        decoder=True,
    ),
}
PRETRAINED = {
    'CISR': 'experiments/pretrained_models/001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth',
    'CISR_HAT-S': 'experiments/pretrained_models/HAT-S_SRx4.pth',
    'CISR_MambaIRv2-light': 'experiments/pretrained_models/mambairv2_lightSR_x4.pth',
    'RISR': 'experiments/pretrained_models/003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_PSNR.pth',
    'AIR': 'experiments/pretrained_models/PromptIR_allinone.pth',
}
ABLATIONS = {  # file-name suffix -> llm policy options it must set (paper Sec. 4.3, Tables 5-6)
    'no_directions': {'directions': False},
    'history_last2': {'history': 'last_k', 'last_k': 2, 'history_initial': False},
    'history_none': {'history': 'none'},
    'no_format_example': {'format_example': False},
    'no_needs': {'needs': False},
}
PAPER_PROMPT = {'prompt': 'paper'}  # every LossAgent file of the paper asks with Figure 6's prompt
SCI_FLOAT = re.compile(r'^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$')


def load_basicsr(path: Path) -> OrderedDict:
    """What basicsr.utils.options.parse_options reads (same loader, same types)."""
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def walk(node, prefix=''):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f'{prefix}{k}.')
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f'{prefix}{i}.')
    else:
        yield prefix[:-1], node


def describe(path: Path) -> dict:
    """What a paper config's file name promises: task, backbone, objective or baseline, ablation, M,
    stage length (Table 8), the agent's image set (Table 11), the objective as a loss (Table 9)."""
    stem = path.stem
    task, rest = stem.split('_', 1)
    info = {
        'task': task,
        'backbone': 'SwinIR' if task != 'AIR' else 'PromptIR',
        'm5': False,
        'ablation': None,
        'stage': TASKS[task]['stage'],
        'agent_images': None,
        'as_loss': False,
    }
    for bb, arch in (('HAT-S_', 'HAT'), ('MambaIRv2-light_', 'MambaIRv2')):
        if rest.startswith(bb):
            info['backbone'], info['pretrained'] = arch, f'{task}_{bb[:-1]}'
            rest = rest[len(bb) :]
    if rest.startswith('M5_'):
        info['m5'], rest = True, rest[3:]
    for suffix in ABLATIONS:
        if rest.endswith('_' + suffix):
            info['ablation'], rest = suffix, rest[: -len(suffix) - 1]
    stage = re.fullmatch(r'(.+)_stage(\d+)', rest)
    if stage:
        rest, info['stage'] = stage.group(1), int(stage.group(2))
    if rest.endswith('_agent_DIV2K'):
        rest, info['agent_images'] = rest[: -len('_agent_DIV2K')], 'DIV2K'
    if rest.endswith('_as_loss'):
        rest, info['as_loss'] = rest[: -len('_as_loss')], True
    info['objective'] = rest  # niqe ... critique, or fixed / random
    info.setdefault('pretrained', task)
    return info


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny networks: thread start-up and contention on the shared cores cost more than they gain (3x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize('path', TRAIN + TEST, ids=lambda p: f'{p.parent.name}/{p.name}')
def test_parses_with_basicsr_loader_and_numbers_are_numbers(path):
    opt = load_basicsr(path)
    assert isinstance(opt, OrderedDict) and opt.get('name'), f'{path.name}: no name'
    strings = [(key, value) for key, value in walk(opt) if isinstance(value, str) and SCI_FLOAT.match(value)]
    assert not strings, f'{path.name}: {strings[0][0]} = {strings[0][1]!r} is a string; write !!float {strings[0][1]}'
    if path in PAPER_TRAIN:
        assert opt['name'] == path.stem, f'{path.name}: name should be the file stem (experiments/<name>/)'
        assert opt['num_gpu'] == 'auto'


def test_every_paper_config_is_present():
    names = {p.stem for p in PAPER_TRAIN}
    for task, objectives in (
        ('CISR', ['niqe', 'maniqa', 'clipiqa', 'qalign', 'psnr_qalign']),
        ('RISR', ['niqe', 'maniqa', 'clipiqa', 'qalign']),
        ('AIR', ['niqe', 'maniqa', 'clipiqa', 'qalign']),
    ):
        for suffix in objectives + ['fixed', 'random']:
            assert f'{task}_{suffix}' in names
    for obj in ('niqe', 'maniqa', 'clipiqa', 'qalign'):
        assert f'CISR_M5_{obj}' in names
    for backbone in ('HAT-S', 'MambaIRv2-light'):  # Tables 13, 14
        for suffix in ('niqe', 'maniqa', 'clipiqa', 'qalign', 'fixed'):
            assert f'CISR_{backbone}_{suffix}' in names
    assert {
        'CISR_niqe_no_directions',
        'CISR_maniqa_history_last2',  # Tables 5, 6
        'CISR_qalign_stage2500',
        'CISR_qalign_stage10000',  # Table 8
        'RISR_clipiqa_as_loss',
        'RISR_niqe_as_loss',  # Table 9
        'CISR_clipiqa_agent_DIV2K',  # Table 11
        'CISR_critique',
        'AIR_critique',
    } <= names  # textual feedback (first arXiv version: AIR)


@pytest.mark.parametrize('path', TRAIN, ids=lambda p: p.stem)
def test_every_train_config_validates_with_basicsr(path):
    """BasicSR's periodic validation: a `datasets.val` set and `val` metrics, curves in TensorBoard."""
    opt = load_basicsr(path)
    val_set, val = opt['datasets'].get('val'), opt.get('val')
    assert val_set and val, f'{path.name}: no datasets.val / val section'
    assert isinstance(val['val_freq'], (int, float)) and 0 < val['val_freq'] <= opt['train']['total_iter']
    assert opt['train']['total_iter'] / val['val_freq'] >= 4, 'at least four points on the curve'
    assert val['save_img'] is False
    metrics = {name: m['type'] for name, m in val['metrics'].items()}
    if path.stem.startswith('RISR'):  # no ground truth in RealSRSet: a no-reference curve
        assert metrics == {'niqe': 'calculate_iqa'} and val['metrics']['niqe']['better'] == 'lower'
        assert val['metrics']['niqe']['metric'] == 'niqe'
        assert val_set['type'] == 'SingleImageDataset' and val_set['dataroot_lq'] == 'datasets/RealSRSet'
    else:
        assert metrics == {'psnr': 'calculate_psnr', 'ssim': 'calculate_ssim'}
    if path.stem.startswith('demo'):  # offline photos used neither for training nor by the agent
        used = set(opt['datasets']['train']['images']) | set(
            (opt.get('agent') or {}).get('dataset', {}).get('images', [])
        )
        assert val_set['type'] == 'SkimagePhotoDataset' and not used & set(val_set['images'])
    if path.stem.startswith('CISR'):
        assert val_set['dataroot_gt'] == 'datasets/Set5/GTmod4'
    if path in PAPER_TRAIN:
        assert opt['logger']['use_tb_logger'] is True  # BasicSR writes the val curves there


def test_pre_trained_rows_are_the_fine_tuning_starts():
    """Appendix A.1: the PSNR-oriented SwinIR checkpoints / PromptIR's checkpoint are the initial ones; each
    test table's Pre-trained row reads the checkpoint its task's runs start from."""
    starts = {load_basicsr(p)['name']: load_basicsr(p)['path']['pretrain_network_g'] for p in PAPER_TRAIN}
    checked = 0
    for path in TEST:
        opt = load_basicsr(path)
        row = (opt.get('methods') or {}).get('Pre-trained')
        if row is None:
            continue
        runs = [
            re.fullmatch(r'experiments/([^/]+)/models/net_g_latest\.pth', m['pretrain_network_g'])
            for m in opt['methods'].values()
        ]
        run_starts = {starts[r.group(1)] for r in runs if r}
        assert run_starts == {row['pretrain_network_g']}, f'{path.name}: Pre-trained row vs the runs it compares'
        checked += 1
    assert checked >= 5
    risr = load_basicsr(ROOT / 'options' / 'test' / 'RISR_benchmark.yml')['methods']['Pre-trained']
    assert risr['pretrain_network_g'].endswith('_PSNR.pth')


def test_paper_files_train_risr_on_df2k():
    """Sec. 4: "For image SR tasks, we follow previous works ... and adopt DF2K ... as the training dataset.\""""
    for path in PAPER_TRAIN:
        train = load_basicsr(path)['datasets']['train']
        assert train['name'] in ('DF2K', 'AllInOne'), path.name
        if path.stem.startswith('RISR'):
            assert train['dataroot_gt'] == 'datasets/DF2K/DF2K_HR_sub'
            assert train['meta_info'] == 'datasets/DF2K/meta_info_DF2K_sub.txt'


def test_table_6_averages_its_three_sets():
    opt = load_basicsr(ROOT / 'options' / 'test' / 'CISR_history.yml')
    assert list(opt['datasets']) == ['Set14', 'Urban100', 'Manga109']
    assert 'maniqa' in opt['metrics']
    ablations = load_basicsr(ROOT / 'options' / 'test' / 'CISR_ablations.yml')
    assert not any('history' in m['pretrain_network_g'] for m in ablations['methods'].values())


# ---------------------------------------------------------------------------------- paper numbers


@pytest.mark.parametrize('path', PAPER_TRAIN, ids=lambda p: p.stem)
def test_train_config_says_what_the_paper_says(path):
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    opt = load_basicsr(path)
    info = describe(path)
    task = TASKS[info['task']]
    train, agent = opt['train'], opt['agent']

    assert opt['scale'] == task['scale']
    assert opt['model_type'] == ('RealLossAgentModel' if info['task'] == 'RISR' else 'LossAgentModel')
    assert train['total_iter'] == task['total'] and agent['stage_iters'] == info['stage']
    assert opt['logger']['save_checkpoint_freq'] == info['stage']
    # Adam, lr 1e-4, constant (Appendix A.1); 8 GPUs x batch_size_per_gpu = the paper's total batch
    for key in ('optim_g', 'optim_d'):
        if key in train:
            assert train[key]['type'] == 'Adam' and train[key]['lr'] == 1e-4 and isinstance(train[key]['lr'], float)
    sched = train['scheduler']
    assert sched['type'] == 'MultiStepLR'
    assert sched['gamma'] == 1.0 or all(m > task['total'] for m in sched['milestones'])
    assert train['warmup_iter'] == -1 and train['ema_decay'] == 0
    assert 8 * opt['datasets']['train']['batch_size_per_gpu'] == task['batch']

    # the loss repository (Table 2; M = 5: Table 10)
    losses = train['losses']
    expected = dict(M5_WEIGHTS if info['m5'] else task['weights'])
    types = {'L1': 'L1Loss', 'MSE': 'MSELoss', 'Perceptual': 'PerceptualLoss', 'GAN': 'GANLoss', 'LPIPS': 'LPIPSLoss'}
    if info['as_loss']:  # Table 9: the objective itself as a fourth loss, maximised/minimised by PyIQALoss
        name = AS_LOSS[info['objective']]
        expected[name], types[name] = losses[name]['loss_weight'], 'PyIQALoss'
        assert losses[name]['metric'] == info['objective'] and losses[name]['loss_weight'] > 0
    assert list(losses) == list(expected)
    weight_key = {'PerceptualLoss': 'perceptual_weight'}
    assert {n: losses[n][weight_key.get(losses[n]['type'], 'loss_weight')] for n in losses} == expected
    assert all(losses[n]['type'] == types[n] for n in losses)
    perceptual = losses['Perceptual']
    assert perceptual['vgg_type'] == 'vgg19' and dict(perceptual['layer_weights']) == {'conv5_4': 1.0}
    assert perceptual['style_weight'] == 0
    if 'GAN' in losses:
        assert losses['GAN']['gan_type'] == 'vanilla'
        d = opt['network_d']
        if info['task'] == 'RISR':
            assert d['type'] == 'UNetDiscriminatorSN'
        else:  # VGG-style discriminators take exactly the GT patch size
            assert d['type'] == 'VGGStyleDiscriminator' and d['input_size'] == opt['datasets']['train']['gt_size']
    else:
        assert 'network_d' not in opt and 'optim_d' not in train

    # network: the type and its published hyper-parameters; the PSNR-oriented release to start from
    net = opt['network_g']
    assert net['type'] == info['backbone']
    assert {k: net[k] for k in PUBLISHED[net['type']]} == PUBLISHED[net['type']]
    if net['type'] == 'SwinIR':
        assert net['upsampler'] == ('nearest+conv' if info['task'] == 'RISR' else 'pixelshuffle')
    assert opt['path']['pretrain_network_g'] == PRETRAINED[info['pretrained']]
    assert Path(PRETRAINED[info['pretrained']]).name in REPRODUCE  # docs say where to get it
    assert agent['pad_multiple'] % net.get('window_size', 8) == 0

    # data: every path is one datasets/README.md describes
    for key, value in walk(opt):
        if isinstance(value, str) and value.startswith('datasets/'):
            assert value.rstrip('/') in DATASETS_README, f'{path.name}: {key} = {value} is not in datasets/README.md'
    val = agent['dataset']
    assert agent['num_images'] == 10 and isinstance(agent['image_seed'], int)
    if info['agent_images'] == 'DIV2K':  # Table 11
        assert val['type'] == 'PairedImageDataset' and val['dataroot_gt'] == 'datasets/DIV2K/DIV2K_valid_HR'
        assert val['dataroot_lq'] == 'datasets/DIV2K/DIV2K_valid_LR_bicubic/X4' and val['filename_tmpl'] == '{}x4'
    elif info['task'] == 'CISR':
        assert val['type'] == 'PairedImageDataset' and val['dataroot_gt'] == 'datasets/Set14/GTmod4'
    elif info['task'] == 'RISR':
        assert val['type'] == 'SingleImageDataset' and val['dataroot_lq'] == 'datasets/RealSRSet'
        assert opt['datasets']['train']['type'] == 'RealESRGANDataset'
        assert opt['queue_size'] % opt['datasets']['train']['batch_size_per_gpu'] == 0
        assert opt['queue_size'] % task['batch'] == 0  # also on one GPU with the whole batch
    else:
        assert val['type'] == 'AllInOneTestDataset'
        assert (
            sorted(val['tasks'])
            == sorted(opt['datasets']['train']['tasks'])
            == sorted(['denoise_15', 'denoise_25', 'denoise_50', 'derain', 'dehaze'])
        )

    # experts: valid pyiqa names with pyiqa's direction; no full-reference expert without GT
    experts = agent['experts']
    for name, e in experts.items():
        if e.get('type') == 'critique':  # textual feedback: a VLM served like the LLM
            assert info['objective'] == 'critique' and e['base_url'].startswith('http://127.0.0.1:')
            continue
        assert e['metric'] in DEFAULT_CONFIGS, f'{path.name}: agent.experts.{name}.metric'
        assert 'lower_better' not in e  # the direction comes from pyiqa
        if info['task'] == 'RISR':
            assert DEFAULT_CONFIGS[e['metric']]['metric_mode'] == 'NR'
    policy = agent['policy']
    if info['objective'] in ('fixed', 'random'):
        assert policy['type'] == info['objective']
    elif info['as_loss']:  # "Add CLIPIQA/NIQE": fixed weights, the objective only recorded
        assert policy['type'] == 'fixed'
        assert {n: e['metric'] for n, e in experts.items()} == {AS_LOSS[info['objective']]: info['objective']}
    elif info['objective'] == 'critique':
        assert [e.get('type') for e in experts.values()] == ['critique']
        assert (
            policy['type'] == 'llm'
            and {k: v for k, v in policy.items() if k not in ('type', 'base_url', 'model')} == PAPER_PROMPT
        )
    else:
        want = OBJECTIVES[info['objective']]
        assert {n: e['metric'] for n, e in experts.items()} == {n: m for n, (m, _) in want.items()}
        for _, (metric, lower) in want.items():
            assert bool(DEFAULT_CONFIGS[metric].get('lower_better', False)) is lower
        assert policy['type'] == 'llm' and policy['base_url'] == LLM_URL and policy['model'] == LLM_MODEL
        switches = {k: v for k, v in policy.items() if k not in ('type', 'base_url', 'model')}
        assert switches == {**PAPER_PROMPT, **ABLATIONS.get(info['ablation'], {})}


def _without(opt, *keys):
    """A copy of `opt` without the dotted `keys`."""
    opt = copy.deepcopy(opt)
    for key in keys:
        *parents, last = key.split('.')
        node = opt
        for part in parents:
            node = node[part]
        node.pop(last, None)
    return opt


@pytest.mark.parametrize(
    'path', [p for p in PAPER_TRAIN if p.stem not in ('CISR_niqe', 'RISR_niqe', 'AIR_niqe')], ids=lambda p: p.stem
)
def test_variants_differ_from_their_base_only_where_they_should(path):
    """Keeps the complete files honest: each is its task's base (X_niqe.yml) plus the documented change."""
    info = describe(path)
    base = load_basicsr(path.parent / f'{info["task"]}_niqe.yml')
    opt = load_basicsr(path)
    allowed = ['name', 'agent.experts', 'agent.policy']
    if info['m5'] or info['as_loss']:
        allowed.append('train.losses')
    if info['stage'] != TASKS[info['task']]['stage']:
        allowed += ['agent.stage_iters', 'logger.save_checkpoint_freq']
    if info['agent_images']:
        allowed.append('agent.dataset')
    if info['backbone'] in ('HAT', 'MambaIRv2'):
        allowed += ['network_g', 'path.pretrain_network_g', 'path.param_key_g', 'agent.pad_multiple']
    assert _without(opt, *allowed) == _without(base, *allowed)


@pytest.mark.parametrize('path', PAPER_TRAIN, ids=lambda p: p.stem)
def test_every_agent_policy_builds_and_prompts_as_configured(path):
    """The policy each file names builds from its options; the llm prompt shows the ablation."""
    from agent import ExpertInfo, History, StageRecord, build_policy
    from lossagent_iqa import lower_is_better

    agent = load_basicsr(path)['agent']
    losses = load_basicsr(path)['train']['losses']
    weights = {n: float(o.get('perceptual_weight', o.get('loss_weight'))) for n, o in losses.items()}
    experts = [
        ExpertInfo(n, kind='text') if e.get('type') == 'critique' else ExpertInfo(n, lower_is_better(e['metric']))
        for n, e in agent['experts'].items()
    ]
    policy = build_policy(agent['policy'], list(weights), list(weights.values()), experts, seed=0, task=agent['task'])
    assert policy.name == agent['policy']['type']
    if policy.name != 'llm':
        return
    history = History(
        [
            StageRecord(
                stage=0,
                iteration=0,
                weights_before=weights,
                scores={e.name: ['sharp' if e.kind == 'text' else 1.0] for e in experts},
            )
        ]
    )
    text = '\n'.join(m['content'] for m in policy.prompts.messages(history, 0))
    policy.close()
    info = describe(path)
    assert ('You should follow these rules' in text) == (info['ablation'] != 'no_needs')
    if info['ablation'] != 'no_needs':
        assert f'Weights: {":".join(weights)}=' in text
        assert ('(for example:' in text) == (info['ablation'] != 'no_format_example')
    scores = [e for e in experts if e.kind != 'text']
    for e in scores:  # Figure 6: one score is "the score"; several are named to tell them apart
        noun = f'{e.name} score' if len(scores) > 1 else 'score'
        said = f'The {"lower" if e.lower_better else "higher"} {noun} stands for better quality.' in text
        assert said == (info['ablation'] != 'no_directions'), e.name
        assert (e.name in text) == (len(scores) > 1), e.name  # Table 5 "w/o": neither direction nor name


# ------------------------------------------------------------------------- tiny data on disk (once)


def _photo(h, w, seed):
    """A textured uint8 BGR image (NIQE needs structure, not flat noise)."""
    from skimage import data as skdata

    src = skdata.astronaut()[:, :, ::-1]
    rng = np.random.default_rng(seed)
    y, x = rng.integers(0, src.shape[0] - h), rng.integers(0, src.shape[1] - w)
    return np.ascontiguousarray(src[y : y + h, x : x + w])


def _write(path: Path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


@pytest.fixture(scope='session')
def data_root(tmp_path_factory) -> Path:
    """The datasets/ layout of datasets/README.md, a few small images per folder."""
    root = tmp_path_factory.mktemp('data')
    d = root / 'datasets'
    down = lambda img, s: cv2.resize(img, (img.shape[1] // s, img.shape[0] // s), interpolation=cv2.INTER_CUBIC)  # noqa
    # DF2K sub-images (GT 160, LR 40) and meta info; OST sub-images; the RISR meta info over both
    lines, risr = [], []
    for i in range(3):
        gt = _photo(160, 160, i)
        _write(d / 'DF2K/DF2K_HR_sub' / f'000{i}_s001.png', gt)
        _write(d / 'DF2K/DF2K_LR_bicubic/X4_sub' / f'000{i}_s001.png', down(gt, 4))
        _write(d / 'OST/OST_HR_sub' / f'ost{i}_s001.png', _photo(160, 160, 10 + i))
        lines.append(f'000{i}_s001.png (160,160,3)')
        risr += [f'DF2K/DF2K_HR_sub/000{i}_s001.png (160,160,3)', f'OST/OST_HR_sub/ost{i}_s001.png (160,160,3)']
    (d / 'DF2K/meta_info_DF2K_sub.txt').write_text('\n'.join(lines) + '\n')
    (d / 'DF2K_OST').mkdir()
    (d / 'DF2K_OST/meta_info_DF2K_OST_sub.txt').write_text('\n'.join(risr) + '\n')
    # SR test sets: LR sides not multiples of 8 (exercises agent.pad_multiple), outputs >= 96 px for NIQE
    for s in ('Set5', 'Set14', 'BSD100', 'Urban100', 'Manga109'):
        for i in range(3):
            gt = _photo(100 + 4 * i, 132, 20 + i)
            _write(d / s / 'GTmod4' / f'img{i}.png', gt)
            _write(d / s / 'LRbicx4' / f'img{i}.png', down(gt, 4))
    for s in ('RealSRSet', 'OST300'):
        for i in range(3):
            _write(d / s / f'real{i}.png', _photo(27 + i, 35, 30 + i))
    # all-in-one: train and test layouts
    a = d / 'allinone'
    for i in range(2):
        clean = _photo(96, 96, 40 + i)  # 96: a multiple of 16 (PromptIR's crop) and NIQE's minimum
        _write(a / 'train/Denoise' / f'clean{i}.png', clean)
        _write(a / 'train/Derain/rainy' / f'rain-{i}.png', clean // 2 + 100)
        _write(a / 'train/Derain/gt' / f'norain-{i}.png', clean)
        _write(a / 'train/Dehaze/synthetic' / f'000{i}_0.8_0.2.jpg', clean // 2 + 120)
        _write(a / 'train/Dehaze/original' / f'000{i}.jpg', clean)
        if i:  # one test image per task: 5 images for the agent (3 noise levels, rain, haze)
            continue
        _write(a / 'test/denoise/bsd68' / f'test{i}.png', clean)
        for sub, lq in (('derain/Rain100L', clean // 2 + 100), ('dehaze/SOTS', clean // 2 + 120)):
            _write(a / 'test' / sub / 'input' / f'{i}.png', lq)
            _write(a / 'test' / sub / 'target' / f'{i}.png', clean)
    return root


@pytest.fixture(scope='session')
def llm_server():
    from openai_stub_server import OpenAIStubServer

    with OpenAIStubServer() as server:
        yield server


# ---------------------------------------------------------------------------------- build and step


TINY_NETS = {
    'SwinIR': dict(embed_dim=12, depths=[1], num_heads=[2], img_size=32),
    'HAT': dict(embed_dim=12, depths=[1], num_heads=[2], window_size=8, compress_ratio=3, squeeze_factor=4),
    'MambaIRv2': dict(embed_dim=12, depths=[1], num_heads=[2], window_size=8, d_state=4, inner_rank=8, num_tokens=8),
    'PromptIR': dict(
        dim=8,
        num_blocks=[1, 1, 1, 1],
        num_refinement_blocks=1,
        heads=[1, 2, 2, 4],
        prompt_dims=[8, 8, 16],
        prompt_sizes=[8, 4, 2],
    ),
}
OFFLINE_METRICS = {'niqe', 'psnr'}


def shrink(opt: dict, data_root: Path, llm_url: str, tmp: Path) -> dict:
    """Test-only override: same types and structure, tiny sizes, generated data, offline weights."""
    opt = copy.deepcopy(opt)
    for key, value in list(walk(opt)):  # every datasets/... path -> the generated copy
        if isinstance(value, str) and (value == 'datasets' or value.startswith('datasets/')):
            node = opt
            *parents, last = key.split('.')
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            node[last] = str(data_root / value)
    opt['network_g'].update(TINY_NETS[opt['network_g']['type']])
    gt = 64 if opt['scale'] == 1 else 128
    train_set = opt['datasets']['train']
    train_set.update(gt_size=gt, batch_size_per_gpu=2, num_worker_per_gpu=0)
    if 'gt_size' in opt:  # Real-ESRGAN synthesis options
        opt.update(gt_size=gt, queue_size=4)
    if 'network_d' in opt:
        opt['network_d']['num_feat'] = 8
        if opt['network_d']['type'] == 'VGGStyleDiscriminator':
            opt['network_d']['input_size'] = gt
    opt['path']['pretrain_network_g'] = None
    for name, loss in opt['train']['losses'].items():  # pretrained backbones -> a weightless loss, same name/weight
        if loss['type'] in ('PerceptualLoss', 'LPIPSLoss'):
            weight = loss.get('perceptual_weight', loss.get('loss_weight'))
            opt['train']['losses'][name] = {'type': 'L1Loss', 'loss_weight': weight}
        elif loss['type'] == 'PyIQALoss' and loss['metric'] not in OFFLINE_METRICS:  # CLIPIQA -> NIQE, same weight
            loss['metric'] = 'niqe'
    agent = opt['agent']
    agent['stage_iters'] = 1  # the one iteration below ends a stage: the policy decides
    for name, e in agent['experts'].items():
        if e.get('type') == 'critique':  # the vision-language model: the local stub server answers
            e.update(base_url=llm_url, retries=0, timeout_s=20)
        elif e['metric'] not in OFFLINE_METRICS:
            agent['experts'][name] = {'metric': 'niqe'}
    if agent['policy']['type'] == 'llm':
        agent['policy'].update(base_url=llm_url, retries=0, timeout_s=20)
    opt['logger']['use_tb_logger'] = False
    # what basicsr.utils.options.parse_options adds
    opt.update(num_gpu=0, dist=False, rank=0, world_size=1, is_train=True, auto_resume=False)
    for phase, dataset in opt['datasets'].items():
        dataset['phase'] = phase.split('_')[0]
        dataset['scale'] = opt['scale']
    root = tmp / 'experiments' / opt['name']
    opt['path'].update(
        experiments_root=str(root),
        models=str(root / 'models'),
        training_states=str(root / 'training_states'),
        log=str(root),
        visualization=str(root / 'visualization'),
    )
    return opt


# One full build + iteration per distinct kind of config; the other files differ from these only in
# keys checked above (experts/policy/ablation switches), whose building is covered by these runs.
BUILD = [
    'CISR_psnr_qalign',
    'CISR_M5_niqe',
    'CISR_HAT-S_niqe',
    'CISR_MambaIRv2-light_fixed',
    'RISR_clipiqa',
    'AIR_random',
    'RISR_niqe_as_loss',
    'CISR_critique',
]


@pytest.mark.parametrize('name', BUILD)
def test_train_config_builds_and_trains_one_stage(name, data_root, llm_server, tmp_path):
    import json
    from torch.utils.data.dataloader import default_collate
    from basicsr.data import build_dataset
    from basicsr.models import build_model

    torch.manual_seed(0)
    original = load_basicsr(ROOT / 'options' / 'train' / f'{name}.yml')
    opt = shrink(original, data_root, llm_server.base_url, tmp_path)
    model = build_model(opt)
    assert type(model).__name__ == original['model_type']
    assert model.losses.names == list(original['train']['losses'])
    assert (model.net_d is None) == ('network_d' not in original)
    assert type(model.get_bare_model(model.net_g)).__name__ == original['network_g']['type']

    train_set = build_dataset(opt['datasets']['train'])
    batch = default_collate([train_set[i] for i in range(2)])
    model.feed_data(batch)
    scale, gt = opt['scale'], opt['datasets']['train']['gt_size']
    assert tuple(model.lq.shape) == (2, 3, gt // scale, gt // scale) and tuple(model.gt.shape) == (2, 3, gt, gt)
    before = model.losses.get_weights()
    model.optimize_parameters(1)
    assert all(torch.isfinite(v).all() for v in model.log_dict.values() if torch.is_tensor(v))
    for loss_name, loss in original['train']['losses'].items():
        if loss['type'] == 'PyIQALoss':  # the objective as a loss took part in the generator's step
            assert f'l_g_{loss_name}' in model.log_dict and float(model.log_dict[f'l_g_{loss_name}']) > 0

    records = [
        json.loads(line)
        for line in (Path(opt['path']['experiments_root']) / 'agent' / 'decisions.jsonl').read_text().splitlines()
    ]
    assert [r['stage'] for r in records] == [0, 1]
    last = records[-1]
    assert last['valid'], last['expert_errors']
    assert sorted(last['scores']) == sorted(original['agent']['experts'])
    assert (
        len(last['images'])
        == len(model.agent.val_set)
        == min(
            10,
            len(
                build_dataset(
                    {**opt['agent']['dataset'], 'phase': 'val', 'scale': scale, 'io_backend': {'type': 'disk'}}
                )
            ),
        )
    )
    policy = original['agent']['policy']['type']
    assert last['policy'] == policy and not last.get('fallback'), last.get('fallback')
    after = model.losses.get_weights()
    if policy == 'fixed':
        assert after == before
    else:  # the llm stub / random draw changed the weights on the criteria
        assert after != before and list(after) == list(before)
    if 'val' in opt['datasets']:  # BasicSR's validation on whole images (LR sides not multiples of the window)
        from basicsr.data import build_dataloader

        val_set = build_dataset(opt['datasets']['val'])
        loader = build_dataloader(val_set, opt['datasets']['val'], num_gpu=0, dist=False, sampler=None, seed=0)
        model.validation(loader, 1, None, False)
        assert set(model.metric_results) == set(original['val']['metrics'])
        assert all(np.isfinite(v) and v != 0 for v in model.metric_results.values()), model.metric_results
    model.finish_training()


def test_full_reference_expert_without_ground_truth_fails_at_start(data_root, llm_server, tmp_path):
    from lossagent_errors import OptionError
    from basicsr.models import build_model

    opt = shrink(load_basicsr(ROOT / 'options' / 'train' / 'RISR_niqe.yml'), data_root, llm_server.base_url, tmp_path)
    opt['agent']['experts']['PSNR'] = {'metric': 'psnr'}
    with pytest.raises(OptionError, match=r'agent\.experts\.PSNR: a full-reference metric needs ground truth'):
        build_model(opt)


# ---------------------------------------------------------------------------------------- test.py


def _train_names():
    return {load_basicsr(p)['name'] for p in TRAIN}


TABLE_TEST = [p for p in TEST if 'methods' in load_basicsr(p)]  # the others are BasicSR test files (test.py)


@pytest.mark.parametrize('path', TABLE_TEST, ids=lambda p: p.stem)
def test_test_config_is_complete(path, data_root):
    from basicsr.archs import build_network
    from basicsr.data import build_dataset
    from pyiqa.default_model_configs import DEFAULT_CONFIGS
    from lossagent_eval.benchmark import _dataset_opts, load_options

    opt = load_options(str(path))
    assert opt['name'] == path.stem
    for key, m in opt['metrics'].items():
        assert (m or {}).get('type', key) in DEFAULT_CONFIGS, f'{path.name}: metrics.{key}'
    runs = _train_names()
    for method, m in opt['methods'].items():
        ckpt = m['pretrain_network_g']
        if ckpt.startswith('experiments/pretrained_models/'):
            assert Path(ckpt).name in REPRODUCE, f'{path.name}: methods.{method}: {ckpt} not in docs/reproduce.md'
        else:
            run = re.fullmatch(r'experiments/([^/]+)/models/net_g_latest\.pth', ckpt)
            assert run and run.group(1) in runs, (
                f'{path.name}: methods.{method} reads {ckpt}: no train config has that name'
            )
    nets = {m.get('network_g', {}).get('type', opt['network_g']['type']) for m in opt['methods'].values()}
    for net in [opt['network_g']] + [m['network_g'] for m in opt['methods'].values() if 'network_g' in m]:
        assert {k: net[k] for k in PUBLISHED[net['type']] if k in net} == {
            k: v for k, v in PUBLISHED[net['type']].items() if k in net
        }
        tiny = {**net, **TINY_NETS[net['type']]}
        build_network(tiny)  # the published keys are accepted by the registered class
    assert nets
    for name, dopt in _dataset_opts(opt).items():
        dopt = {
            k: (str(data_root / v) if isinstance(v, str) and v.startswith('datasets/') else v) for k, v in dopt.items()
        }
        assert len(build_dataset(dopt)) > 0, f'{path.name}: datasets.{name}'


# ------------------------------------------------------------------ glue the RISR configs rely on


def test_real_lossagent_model_runs_basicsr_synthesis_on_cpu(data_root, llm_server, tmp_path):
    """RealLossAgentModel: BasicSR's degradations and training-pair pool on CPU; USM switches per role."""
    import torch.nn.functional as F
    from torch.utils.data.dataloader import default_collate
    from basicsr.data import build_dataset
    from basicsr.models import build_model

    torch.manual_seed(0)
    opt = shrink(load_basicsr(ROOT / 'options' / 'train' / 'RISR_fixed.yml'), data_root, llm_server.base_url, tmp_path)
    model = build_model(opt)
    train_set = build_dataset(opt['datasets']['train'])
    opt['queue_size'] = model.queue_size = 2
    for step in range(2):  # the pool (2) fills with the first batch of 2, then swaps
        model.feed_data(default_collate([train_set[(2 * step + i) % len(train_set)] for i in range(2)]))
    assert model.queue_lr.device.type == 'cpu' and model.queue_ptr == 2
    assert tuple(model.lq.shape) == (2, 3, 32, 32) and model.lq.is_contiguous()
    assert torch.equal(model.lq, (model.lq * 255).round() / 255) and model.lq.min() >= 0 and model.lq.max() <= 1
    out = torch.rand_like(model.gt)
    targets = model.loss_targets()
    assert targets['pixel'] is model.gt_usm and targets['perceptual'] is model.gt_usm  # Real-ESRGAN's defaults
    assert model.discriminator_real() is model.gt
    _, terms = model.losses.generator_loss(out, model.gt, None, targets)
    assert torch.allclose(terms['l_g_L1'], F.l1_loss(out, model.gt_usm))
    model.opt['l1_gt_usm'] = False
    assert model.loss_targets()['pixel'] is model.gt
    model.is_train = False  # validation data keeps its own LQ
    model.feed_data({'lq': torch.rand(1, 3, 8, 8)})
    assert tuple(model.lq.shape) == (1, 3, 8, 8)


def test_real_lossagent_model_names_missing_degradation_option(data_root, llm_server, tmp_path):
    from lossagent_errors import OptionError
    from basicsr.models import build_model

    opt = shrink(load_basicsr(ROOT / 'options' / 'train' / 'RISR_fixed.yml'), data_root, llm_server.base_url, tmp_path)
    del opt['jpeg_range2']
    with pytest.raises(OptionError, match=r'^jpeg_range2: required top-level option of RealLossAgentModel'):
        build_model(opt)
    opt = shrink(load_basicsr(ROOT / 'options' / 'train' / 'RISR_fixed.yml'), data_root, llm_server.base_url, tmp_path)
    opt['queue_size'] = 5
    with pytest.raises(OptionError, match=r'^queue_size: 5 must be a multiple'):
        build_model(opt)
