"""train.py end to end on CPU: a tiny SwinIR for a few iterations, real experts, real policies."""

import re

import pytest
import torch

from training import tiny_options


def logged_weights(run) -> dict[int, dict[str, float]]:
    """iteration -> the weights the iteration log line reports (print_freq: 1)."""
    log = next(run.root.glob('train_*.log')).read_text()
    weights = {}
    for match in re.finditer(r'iter:\s+(\d+),.*?((?:w_\w+: \S+ ?)+)', log):
        weights[int(match.group(1))] = {k: float(v) for k, v in re.findall(r'w_(\w+): (\S+)', match.group(2))}
    return weights


def test_fixed_policy_logs_one_record_per_stage(make_run):
    run = make_run(tiny_options('e2e_fixed', stage_iters=3, total_iter=9))
    run.train()
    records = run.records()
    assert [r['stage'] for r in records] == [0, 1, 2, 3]
    assert [r['iteration'] for r in records] == [0, 3, 6, 9]
    assert records[0]['policy'] == 'initial' and records[1]['policy'] == 'fixed'
    for r in records:
        assert r['weights_after'] == {'L1': 1.0, 'SSIM': 0.5}
        assert len(r['scores']['NIQE']) == 3 and len(r['scores']['PSNR']) == 3
        assert r['directions'] == {'NIQE': 'lower', 'PSNR': 'higher'}
        assert r['valid'] is True
    # PSNR improves from the untrained network (a sanity check that experts see real outputs)
    assert records[-1]['mean_scores']['PSNR'] > records[0]['mean_scores']['PSNR']
    assert (run.root / 'models' / 'net_g_latest.pth').exists()
    # plotted automatically at the end of training
    assert (run.root / 'agent' / 'weights.png').stat().st_size > 0
    assert (run.root / 'agent' / 'scores.png').stat().st_size > 0


def test_random_policy_changes_weights_on_the_criteria_at_each_boundary(make_run):
    run = make_run(tiny_options('e2e_random', stage_iters=3, total_iter=9, policy={'type': 'random'}))
    run.train()
    records = run.records()
    weights = logged_weights(run)
    for r in records[1:]:
        assert r['weights_after'] != r['weights_before']
        boundary = r['iteration']
        # the iteration that ends a stage still trains with the old weights; the next one with the new
        assert weights[boundary] == pytest.approx(r['weights_before'], rel=1e-4)
        if boundary + 1 in weights:
            assert weights[boundary + 1] == pytest.approx(r['weights_after'], rel=1e-4)


def test_basicsr_srgan_option_file_trains_unchanged(make_run):
    """pixel_opt / gan_opt as written for SRGANModel: read as the repository {L1, GAN}."""
    opt = tiny_options('e2e_legacy', gan=True, stage_iters=2, total_iter=4)
    losses = opt['train'].pop('losses')
    opt['train']['pixel_opt'] = losses['L1']
    opt['train']['gan_opt'] = losses['GAN']
    opt['train']['net_d_iters'] = 1
    opt['train']['net_d_init_iters'] = 0
    run = make_run(opt)
    run.train()
    records = run.records()
    assert list(records[0]['weights_before']) == ['L1', 'GAN']
    assert (run.root / 'models' / 'net_d_latest.pth').exists()


def test_basicsr_srgan_model_type_still_works_through_train_py(make_run):
    """BasicSR's own SRGANModel (with a CNN: its VGG discriminator `.view`s SwinIR's strided output)."""
    opt = tiny_options('e2e_srgan', gan=True, total_iter=2)
    opt['network_g'] = {
        'type': 'MSRResNet',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 16,
        'num_block': 1,
        'upscale': 2,
    }
    losses = opt['train'].pop('losses')
    opt.pop('agent')
    opt['model_type'] = 'SRGANModel'
    opt['train'].update(pixel_opt=losses['L1'], gan_opt=losses['GAN'])
    run = make_run(opt)
    run.train()
    assert (run.root / 'models' / 'net_g_latest.pth').exists()


def test_auto_resume_on_cpu_keeps_the_agent_state(make_run):
    opt = tiny_options('e2e_resume', stage_iters=2, total_iter=4, policy={'type': 'random'})
    opt['logger']['save_checkpoint_freq'] = 2
    run = make_run(opt)
    run.train()
    state = torch.load(run.root / 'training_states' / '4.state', weights_only=True)
    assert state['agent']['stage'] == 2 and len(state['agent']['history']) == 3
    run.train('--auto_resume', '--force_yml', 'train:total_iter=6')
    records = run.records()
    assert [r['stage'] for r in records] == [0, 1, 2, 3]
    assert records[3]['weights_before'] == records[2]['weights_after']


@pytest.mark.parametrize(
    'overrides, message',
    [
        (['train:losses:L1:type=NoSuchLoss'], "train.losses.L1.type: unknown loss 'NoSuchLoss'"),
        (['agent:experts:NIQE:metric=nosuchmetric'], "agent.experts.NIQE: unknown pyiqa metric 'nosuchmetric'"),
        (['agent:policy:type=nosuchpolicy'], "agent.policy.type: unknown policy 'nosuchpolicy'"),
        (['agent:stage_iters=0'], 'agent.stage_iters must be a positive integer'),
        (['agent:stage_iter=1'], 'agent.stage_iter: unknown option (did you mean `stage_iters`?)'),
        (['network_g:type=NoSuchNet'], "network_g.type: unknown architecture 'NoSuchNet'"),
        (['datasets:train:type=NoSuchData'], "datasets.train.type: unknown dataset 'NoSuchData'"),
        (['datasets:train:crop_sise=96'], 'datasets.train.crop_sise: unknown option (did you mean `crop_size`?)'),
        (
            ['datasets:train:type=PairedImageDataset', 'datasets:train:dataroot_gt=/nonexistent/DF2K_HR'],
            'datasets.train.dataroot_gt: /nonexistent/DF2K_HR does not exist',
        ),
        (
            ['path:pretrain_network_g=/nonexistent/net_g.pth'],
            'path.pretrain_network_g: /nonexistent/net_g.pth does not exist',
        ),
        (['agent:initial_weights=[1.0,0.5,0.1]'], 'agent.initial_weights: 3 weights for 2 losses'),
        (['agent:initial_weights=[0,0]'], 'agent.initial_weights: all weights are zero'),
        (['agent:policy:type=llm'], 'agent.policy.base_url'),
        (['train:losses:L1:loss_weight=heavy'], "train.losses.L1.loss_weight: got 'heavy'; expected a number"),
        (['train:losses:SSIM:window=7'], 'train.losses.SSIM.window: unknown option (did you mean `window_size`?)'),
        (
            ['agent:experts:NIQE:lower_beter=true'],
            'agent.experts.NIQE.lower_beter: unknown option (did you mean `lower_better`?)',
        ),
        (
            ['agent:policy:type=adaptive', 'agent:policy:sigmaa=0.1'],
            'agent.policy.sigmaa: unknown option (did you mean `sigma`?)',
        ),
        (['agent:nosuch:key=1'], '--force_yml agent:nosuch:key=1: agent:nosuch is not in'),
    ],
)
def test_bad_options_fail_at_start_up_with_one_line(make_run, overrides, message):
    run = make_run(tiny_options('e2e_bad'))
    proc = run.train('--force_yml', *overrides, check=False, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one line, not a stack
    assert 'Start training' not in proc.stdout + proc.stderr
    assert not run.root.exists()  # nothing was written


def test_a_bad_option_file_never_moves_the_finished_run(make_run, tmp_path):
    """BasicSR archives `experiments/<name>` when a run starts again; a typo must not get that far."""
    run = make_run(tiny_options('e2e_keep', stage_iters=2, total_iter=2))
    run.train()
    before = sorted(p.name for p in run.root.iterdir())
    run.yml.write_text(run.yml.read_text().replace('stage_iters: 2', 'stage_iter: 2'))
    proc = run.train(check=False, timeout=120)
    assert proc.returncode == 2 and 'agent.stage_iter: unknown option (did you mean `stage_iters`?)' in proc.stderr
    run.yml.write_text(run.yml.read_text().replace('  stage_iter: 2', '  stage_iters: [2'))  # YAML syntax
    proc = run.train(check=False, timeout=120)
    assert proc.returncode == 2 and 'YAML syntax error' in proc.stderr
    assert re.search(rf'{re.escape(str(run.yml))}:\d+:\d+: YAML syntax error', proc.stderr)
    assert sorted(p.name for p in run.root.iterdir()) == before
    assert not list(run.root.parent.glob(f'{run.name}_archived_*'))


def test_llm_policy_against_a_real_http_server(make_run):
    from openai_stub_server import OpenAIStubServer

    def responder(body, index):
        return 'Sure!\n**Weights:** L1:SSIM=0.8:0.9\nThoughts: more structure.'

    with OpenAIStubServer(responder) as server:
        run = make_run(
            tiny_options(
                'e2e_llm',
                stage_iters=3,
                total_iter=6,
                policy={'type': 'llm', 'base_url': server.base_url, 'model': 'stub'},
            )
        )
        run.train()
    records = run.records()
    assert [r['policy'] for r in records] == ['initial', 'llm', 'llm']
    for r in records[1:]:
        assert r['fallback'] is None
        assert r['weights_after'] == {'L1': 0.8, 'SSIM': 0.9}
        assert len(r['answers']) == 3  # one prompt per validation image
    # the prompt shows the loss names, each expert's direction and the history
    prompt = str(records[2]['prompts'][0])
    assert 'L1:SSIM' in prompt and 'lower' in prompt.lower() and 'higher' in prompt.lower()
    assert len(server.requests) == 6


def test_llm_server_down_keeps_training_on_the_last_weights(make_run):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    run = make_run(
        tiny_options(
            'e2e_llm_down',
            stage_iters=3,
            total_iter=6,
            policy={'type': 'llm', 'base_url': f'http://127.0.0.1:{port}/v1', 'retries': 1, 'timeout_s': 2},
        )
    )
    run.train()
    records = run.records()
    assert len(records) == 3
    for r in records[1:]:
        assert r['fallback'] and r['weights_after'] == r['weights_before'] == {'L1': 1.0, 'SSIM': 0.5}


def test_text_and_human_experts_reach_the_llm_prompt(make_run, tmp_path):
    from openai_stub_server import OpenAIStubServer

    def responder(body, index):
        content = body['messages'][-1]['content']
        if isinstance(content, list):  # a vision request: the critique expert
            assert any(
                part.get('type') == 'image_url' and part['image_url']['url'].startswith('data:image/png;base64,')
                for part in content
            )
            return 'The textures look smeared and slightly blurry.'
        return 'Weights: L1:SSIM=0.7:0.6\nThoughts: sharpen.'

    feedback = tmp_path / 'feedback.txt'
    feedback.write_text('Too smooth: please bring back the fur texture.')
    with OpenAIStubServer(responder) as server:
        experts = {
            'NIQE': {'metric': 'niqe'},
            'Critic': {'type': 'critique', 'base_url': server.base_url, 'model': 'stub-vlm'},
            'Human': {'type': 'human', 'timeout_s': 0, 'file': str(feedback)},
        }
        run = make_run(
            tiny_options(
                'e2e_text',
                stage_iters=3,
                total_iter=3,
                experts=experts,
                policy={'type': 'llm', 'base_url': server.base_url, 'model': 'stub'},
            )
        )
        run.train()
    records = run.records()
    assert records[1]['scores']['Critic'] == ['The textures look smeared and slightly blurry.'] * 3
    assert records[1]['scores']['Human'] == ['Too smooth: please bring back the fur texture.'] * 3
    prompt = str(records[1]['prompts'][0])
    assert 'smeared' in prompt and 'fur texture' in prompt
    assert records[1]['weights_after'] == {'L1': 0.7, 'SSIM': 0.6}
    assert len(list((run.root / 'agent' / 'stage_1').glob('*.png'))) == 3


def test_async_decisions_apply_when_the_answer_arrives(make_run):
    from openai_stub_server import OpenAIStubServer

    with OpenAIStubServer(delay=0.6) as server:
        run = make_run(
            tiny_options(
                'e2e_async',
                stage_iters=6,
                total_iter=18,
                policy={'type': 'llm', 'base_url': server.base_url, 'model': 'stub'},
            )
        )
        run.opt['agent']['async'] = True
        run.yml.write_text(__import__('yaml').safe_dump(run.opt, sort_keys=False))
        run.train()
    records = run.records()
    assert [r['stage'] for r in records] == [0, 1, 2, 3]  # the last answer is recorded at the end
    assert records[-1]['applied_iteration'] in (None, 19)
    weights = logged_weights(run)
    delayed = [r for r in records[1:-1] if r['applied_iteration'] > r['iteration'] + 1]
    assert delayed, 'training should have gone on while the server was thinking'
    for r in records[1:-1]:
        assert r['fallback'] is None
        applied = r['applied_iteration']
        assert r['iteration'] < applied <= r['iteration'] + 6 + 1
        assert weights[applied - 1] == pytest.approx(r['weights_before'], rel=1e-4)
        if applied in weights:
            assert weights[applied] == pytest.approx(r['weights_after'], rel=1e-4)


def test_api_key_is_used_but_never_written(make_run):
    from openai_stub_server import OpenAIStubServer

    secret = 'sk-test-DO-NOT-LEAK-1234567890'
    with OpenAIStubServer() as server:
        run = make_run(
            tiny_options(
                'e2e_secret',
                stage_iters=2,
                total_iter=4,
                policy={
                    'type': 'llm',
                    'base_url': server.base_url,
                    'model': 'stub',
                    'api_key_env': 'LOSSAGENT_TEST_KEY',
                },
            )
        )
        run.opt['logger']['use_tb_logger'] = True
        run.yml.write_text(__import__('yaml').safe_dump(run.opt, sort_keys=False))
        run.train(env={'LOSSAGENT_TEST_KEY': secret})
    assert any(
        {k.lower(): v for k, v in h.items()}.get('authorization') == f'Bearer {secret}' for h in server.headers_seen
    )
    from training import ROOT

    written = [p for folder in (run.root, ROOT / 'tb_logger' / run.name) for p in folder.rglob('*') if p.is_file()]
    assert written
    for path in written:
        assert secret.encode() not in path.read_bytes(), f'{path} contains the API key'


def test_nan_training_is_reported_once_and_scores_marked_invalid(make_run):
    opt = tiny_options('e2e_nan', stage_iters=3, total_iter=6, policy={'type': 'adaptive'})
    opt['train']['optim_g']['lr'] = 1e30  # blows the network up within a few steps
    run = make_run(opt)
    proc = run.train()
    log = proc.stdout + proc.stderr + next(run.root.glob('train_*.log')).read_text()
    assert log.count('Non-finite generator loss/gradients at iteration') >= 1
    records = run.records()
    assert len(records) == 3  # the run went on
    broken = [r for r in records if not r['valid']]
    for r in broken:
        assert (
            all(v is None for v in r['scores']['NIQE'])
            or r['mean_scores']['NIQE'] is None
            or any(v is None for v in r['scores']['NIQE'])
        )
        assert r['expert_errors']
