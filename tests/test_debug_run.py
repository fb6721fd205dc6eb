"""`train.py --debug` (BasicSR's quick sanity run) reaches the agent: the stage shrinks to 8 iterations."""

import json
import shutil

from lossagent_runtime.debug_run import DEBUG_STAGE_ITERS, shrink_agent_for_debug
from training import ROOT, Run, tiny_options


def test_only_debug_runs_shrink_and_every_change_is_named():
    opt = {'name': 'CISR_niqe', 'agent': {'stage_iters': 5000, 'num_images': 10}}
    assert shrink_agent_for_debug(opt) == [] and opt['agent']['stage_iters'] == 5000
    opt = {
        'name': 'debug_CISR_niqe',
        'agent': {
            'stage_iters': 5000,
            'num_images': 10,
            'snapshots': 3,
            'snapshot_every': 100,
            'policy': {'type': 'lookahead'},
        },
    }
    changes = shrink_agent_for_debug(opt)
    assert opt['agent'] == {
        'stage_iters': DEBUG_STAGE_ITERS,
        'num_images': 2,
        'snapshots': 2,
        'snapshot_every': 7,
        'policy': {'type': 'lookahead', 'probe_iters': 4},
    }
    assert changes == [
        'agent.stage_iters 5000 -> 8',
        'agent.num_images 10 -> 2',
        'agent.snapshots 3 -> 2',
        'agent.snapshot_every 100 -> 7',
        'agent.policy.probe_iters 10 -> 4',
    ]
    small = {'name': 'debug_x', 'agent': {'stage_iters': 3, 'num_images': 1}}
    assert shrink_agent_for_debug(small) == [] and small['agent'] == {'stage_iters': 3, 'num_images': 1}
    bad = {'name': 'debug_x', 'agent': {'stage_iters': 'often'}}
    assert shrink_agent_for_debug(bad) == []  # left for the option check to name


def test_every_paper_file_in_debug_mode_passes_the_agent_checks():
    import lossagent_compat  # noqa: F401
    from lossagent_options.agent_options import AgentOptions
    from lossagent_runtime.option_file import load_yaml

    for path in sorted((ROOT / 'options' / 'train').glob('*.yml')):
        opt = load_yaml(str(path))
        if not opt.get('agent'):
            continue
        opt['name'] = 'debug_' + opt['name']
        shrink_agent_for_debug(opt)
        opt.setdefault('world_size', 1)
        AgentOptions.from_opt(opt)  # raises OptionError if the shrunk values do not fit together


def test_debug_run_hits_two_boundaries(tmp_path):
    run = Run(tmp_path, tiny_options('dbg', stage_iters=5000, total_iter=16))
    root = ROOT / 'experiments' / f'debug_{run.name}'
    try:
        proc = run.train('--debug')
        records = [json.loads(line) for line in (root / 'agent' / 'decisions.jsonl').read_text().splitlines()]
        assert [r['stage'] for r in records if not r.get('superseded')] == [0, 1, 2]
        assert [r['iteration'] for r in records if not r.get('superseded')] == [0, 8, 16]
        log = next(root.glob('train_*.log')).read_text()
        assert 'Debug run, agent shortened: agent.stage_iters 5000 -> 8; agent.num_images 3 -> 2' in log
        assert proc.returncode == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
        run.cleanup()
