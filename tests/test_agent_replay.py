"""`python -m agent.runs.replay` re-asks logged boundaries against a server, without training."""

import json
import subprocess
import sys
from pathlib import Path

from agent.runs.replay import history_from_records, load_records, main
from openai_stub_server import OpenAIStubServer

N = ['L1', 'Perceptual', 'GAN']


def write_log(path: Path, with_experts: bool):
    w0 = {'L1': 1.0, 'Perceptual': 0.1, 'GAN': 0.01}
    w1 = {'L1': 0.8, 'Perceptual': 0.2, 'GAN': 0.05}
    lines = [
        dict(stage=0, iteration=0, weights_before=w0, weights_after=w0, scores={'NIQE': [5.0, 6.0]}),
        dict(
            stage=1,
            iteration=100,
            weights_before=w0,
            weights_after={'L1': 9, 'Perceptual': 9, 'GAN': 9},
            scores={'NIQE': [4.0, 5.0]},
            superseded=True,
        ),  # a crash before the checkpoint: redone
        dict(stage=1, iteration=100, weights_before=w0, weights_after=w1, scores={'NIQE': [4.5, 5.5]}),
        dict(
            stage=2,
            iteration=200,
            weights_before=w1,
            weights_after=w1,
            scores={'NIQE': [4.2, None]},
            fallback='0 of 2 answers usable, need 1',
        ),
    ]
    for line in lines:
        line.update(
            policy='llm',
            prompts=[],
            answers=[],
            latency_s=1.0,
            info={},
            superseded=line.get('superseded', False),
            mean_scores={},
        )
        if with_experts:
            line['experts'] = [{'name': 'NIQE', 'lower_better': True, 'kind': 'score'}]
    path.write_text('\n'.join(json.dumps(x) for x in lines) + '\n{"cut by a cra')


def test_history_rebuilt_from_non_superseded_records(tmp_path):
    log = tmp_path / 'decisions.jsonl'
    write_log(log, with_experts=False)
    h = history_from_records(load_records(log))
    assert [r.stage for r in h] == [0, 1, 2]
    assert h.records[1].scores == {'NIQE': [4.5, 5.5]} and h.records[2].weights['GAN'] == 0.05


def test_replay_against_stub(tmp_path, capsys):
    log, yml = tmp_path / 'decisions.jsonl', tmp_path / 'opt.yml'
    write_log(log, with_experts=True)
    yml.write_text(
        'manual_seed: 3\nagent:\n  experts:\n    NIQE: {metric: niqe}\n'
        '  policy:\n    type: llm\n    base_url: http://127.0.0.1:9/v1\n    backoff_s: 0.01\n'
        '    max_change: null\n'  # the answer as given, not held within x2 of the logged weights
    )
    answer = 'Weights: L1:Perceptual:GAN=0.6:0.3:0.07\nThoughts: t'
    with OpenAIStubServer(lambda body, i: answer) as srv:
        assert (
            main(
                [
                    str(log),
                    '--opt',
                    str(yml),
                    '--base-url',
                    srv.base_url,
                    '--model',
                    'other-model',
                    '--out',
                    str(tmp_path / 'replay.jsonl'),
                ]
            )
            == 0
        )
        bodies = srv.requests
    out = capsys.readouterr().out
    assert 'experts from the log: NIQE (lower is better)' in out
    assert len(bodies) == 4 and bodies[0]['model'] == 'other-model'  # 2 boundaries x 2 images
    row1 = next(row for row in out.splitlines() if row.strip().startswith('1 '))
    assert '0.8:0.2:0.05' in row1 and '0.6:0.3:0.07' in row1
    assert 'recorded fallback: 0 of 2' in out
    stage2 = [b for b in bodies if 'Step 100 weights is 0.8:0.2:0.05' in b['messages'][1]['content']]
    assert len(stage2) == 2  # the second boundary saw the whole history up to it
    replayed = [json.loads(row) for row in (tmp_path / 'replay.jsonl').read_text().splitlines()]
    assert [r['stage'] for r in replayed] == [1, 2] and replayed[0]['weights']['GAN'] == 0.07


def test_replay_one_stage_other_policy_yaml_directions(tmp_path):
    log, yml = tmp_path / 'decisions.jsonl', tmp_path / 'opt.yml'
    write_log(log, with_experts=False)
    yml.write_text('agent:\n  experts:\n    NIQE: {metric: niqe}\n  policy: {type: llm}\n')
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'agent.runs.replay',
            str(log),
            '--opt',
            str(yml),
            '--policy-type',
            'random',
            '--stage',
            '2',
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'policy random, experts from the yaml: NIQE (lower is better)' in proc.stdout
    rows = [row for row in proc.stdout.splitlines() if row.strip().startswith('2 ')]
    assert len(rows) == 1 and not any(row.strip().startswith('1 ') for row in proc.stdout.splitlines())
