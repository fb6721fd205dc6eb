"""`make demo LLM_URL=...` and `LOSSAGENT_LLM_URL=... make demo`: the Makefile's own command, run by make.

The demo's option file keeps one option set per policy (agent/policies/registry.py), so the Makefile's
`--force_yml agent:policy:type=llm agent:policy:llm:base_url=URL` gives a valid llm policy. The run is
shortened through the target's FORCE variable (2 boundaries, 3 images) and answered by the local
OpenAI-compatible server (tests/openai_stub_server.py). `-o STAMP` tells make the install stamp is
up to date: in a worktree setup.py may be newer than the shared environment's stamp, and the
install recipe must never run from a test.
"""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from agent import ExpertInfo, StageRecord, build_policy
from agent.policies import check_policy
from agent.runs.summary import format_thoughts
from lossagent_errors import OptionError
from lossagent_options.agent_options import AgentOptions
from lossagent_runtime.option_file import load_yaml
from openai_stub_server import OpenAIStubServer
from training import ROOT

STAMP = ROOT / '.venv' / '.lossagent-installed'
needs_make = pytest.mark.skipif(
    shutil.which('make') is None or not STAMP.is_file(),
    reason='needs make and an installed environment (.venv/.lossagent-installed)',
)


def make_demo(name: str, url: str, via_env: bool):
    shorten = (
        f'name={name} train:total_iter=4 agent:stage_iters=2 agent:num_images=3 agent:snapshots=1 '
        'logger:print_freq=2 logger:use_tb_logger=false'
    )
    args = ['make', '-o', str(STAMP.relative_to(ROOT)), 'demo', f'DEMO_NAME={name}', f'FORCE={shorten}']
    # run as a user would: not as a sub-make of `make test` (which would print 'Entering directory')
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ('LLM_URL', 'LOSSAGENT_LLM_URL', 'MAKEFLAGS', 'MFLAGS', 'MAKELEVEL')
    }
    if via_env:
        env['LOSSAGENT_LLM_URL'] = url
    else:
        args.append(f'LLM_URL={url}')
    dry = subprocess.run(args[:1] + ['-n'] + args[1:], cwd=ROOT, capture_output=True, text=True, env=env)
    assert 'pip install' not in dry.stdout and dry.stdout.startswith('.venv/bin/python train.py'), dry.stdout[:500]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


@needs_make
@pytest.mark.parametrize('via_env', [False, True], ids=['LLM_URL', 'LOSSAGENT_LLM_URL'])
def test_make_demo_with_an_llm_url_trains_with_the_llm_policy(via_env):
    name = f'test_make_demo_{uuid.uuid4().hex[:8]}'
    try:
        with OpenAIStubServer() as server:
            proc = make_demo(name, server.base_url, via_env)
            asked = len(server.requests)
        assert proc.returncode == 0, f'{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}'
        assert 'unknown option' not in proc.stdout + proc.stderr
        lines = (ROOT / 'experiments' / name / 'agent' / 'decisions.jsonl').read_text().splitlines()
        records = [json.loads(line) for line in lines]
        decided = [r for r in records if r['policy'] == 'llm']
        assert len(decided) == 2 and all(not r.get('fallback') for r in decided), decided
        assert asked == 2 * 3  # one prompt per validation image at each of the two boundaries
        assert decided[-1]['weights_after'] != records[0]['weights_after']  # the server's weights were applied
        assert 'Agent decisions per stage' in proc.stdout  # the recipe went on to the summary, with Thoughts
        assert 'Thoughts per stage:\n  stage 1   shifting emphasis between the losses to explore. (x3)' in proc.stdout
    finally:
        shutil.rmtree(ROOT / 'experiments' / name, ignore_errors=True)
        for path in (ROOT / 'experiments').glob(f'{name}_archived_*'):
            shutil.rmtree(path, ignore_errors=True)


def test_the_policy_option_sets_of_one_file():
    experts = [ExpertInfo('NIQE', lower_better=True)]
    sets = {'adaptive': {'strategy': 'paired', 'sigma': 0.5, 'max_move': 0.5}, 'llm': {'base_url': None}}
    adaptive = build_policy({'type': 'adaptive', **sets}, ['L1', 'SSIM'], [1.0, 0.5], experts)
    assert adaptive.name == 'adaptive' and adaptive.strategy == 'paired' and adaptive.search.sigma0 == 0.5
    llm = dict(sets, llm={'base_url': 'http://127.0.0.1:9/v1', 'timeout_s': 0.5, 'retries': 0})
    check_policy({'type': 'llm', **llm}, ['L1', 'SSIM'], [1.0, 0.5], experts)
    with pytest.raises(OptionError, match=r'^agent\.policy\.strategy: beside agent\.policy\.adaptive'):
        build_policy({'type': 'adaptive', 'strategy': 'es', **sets}, ['L1', 'SSIM'], [1.0, 0.5], experts)
    # the probing policy's set too: the hook reads probe_iters from the policy, not from the mapping
    nested = {'type': 'lookahead', 'lookahead': {'probe_iters': 5}, **sets}
    assert build_policy(nested, ['L1', 'SSIM'], [1.0, 0.5], experts).probe_iters == 5
    opt = load_yaml(str(ROOT / 'options' / 'train' / 'demo_cpu.yml'))
    opt['world_size'] = 1
    opt['agent'].update(stage_iters=5, snapshots=1, policy=nested)
    with pytest.raises(OptionError, match=r'^agent\.policy\.lookahead\.probe_iters: 5 must be smaller'):
        AgentOptions.from_opt(opt)
    # the old failure, still one line
    with pytest.raises(OptionError, match=r'agent\.policy\.strategy: unknown option'):
        check_policy(
            {'type': 'llm', 'strategy': 'paired', 'base_url': 'http://127.0.0.1:9/v1'},
            ['L1', 'SSIM'],
            [1.0, 0.5],
            experts,
        )


def test_the_summary_shows_each_stages_thoughts():
    weights = {'L1': 1.0, 'SSIM': 0.5}
    records = [StageRecord(0, 0, weights, {'NIQE': [5.0, 6.0]})]
    for stage, thoughts in ((1, ['more SSIM', 'more SSIM', None]), (2, ['x' * 300])):
        records.append(
            StageRecord(
                stage,
                50 * stage,
                weights,
                {'NIQE': [4.0, 5.0]},
                policy='llm',
                info={'thoughts': thoughts},
                weights_after=weights,
            )
        )
    text = format_thoughts(records, limit=1, width=20)
    assert text.splitlines() == [
        'Thoughts per stage:',
        '  stage 1   more SSIM (x2)',
        '  stage 2   xxxxxxxxxxxxxxxxx...',
    ]
    assert format_thoughts(records[:1]) == ''


def test_every_policy_set_of_the_demo_file_passes_the_option_check():
    """`make demo POLICY=<type>` sets agent.policy.type: each set the file keeps must then stand alone."""
    from agent.policies.registry import POLICY_REGISTRY

    policy = load_yaml(str(ROOT / 'options' / 'train' / 'demo_cpu.yml'))['agent']['policy']
    sets = [k for k, v in policy.items() if k in POLICY_REGISTRY and isinstance(v, dict)]
    assert {'adaptive', 'llm', 'hybrid', 'lookahead', 'fixed', 'random'} <= set(sets)
    experts = [ExpertInfo('NIQE', lower_better=True), ExpertInfo('PSNR', weight=0.0)]
    for kind in sets:
        chosen = dict(policy, type=kind)
        if kind == 'llm':  # the one set that needs a server (make demo LLM_URL=...)
            chosen['llm'] = dict(chosen['llm'], base_url='http://127.0.0.1:9/v1')
        check_policy(chosen, ['L1', 'SSIM', 'GAN'], [1.0, 0.5, 0.01], experts)
