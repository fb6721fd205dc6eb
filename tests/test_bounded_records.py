"""Whatever a server answers, what a run keeps of it is bounded: in the record, the log, the history in
memory, and the re-prompt sent back. 300 boundaries against a misbehaving server (garbage, 500s,
stalls, a 2 MB answer, truncated JSON) keep the log small and memory flat."""

import json
import subprocess
import sys
import time

from agent.policies import Decision
from agent.record import PROMPT_BUDGET, TEXT_LIMIT, History, StageRecord, bounded_prompts, clip_text
from openai_stub_server import OpenAIStubServer, deterministic_responder
from training import ROOT, tiny_options

HUGE = 2_000_000


def test_clip_text_notes_the_full_length():
    assert clip_text('abc') == 'abc'
    text = clip_text('head' + 'x' * HUGE + 'tail')
    assert len(text) < TEXT_LIMIT + 100
    assert text.startswith('head') and text.endswith('tail')
    assert f'[... cut by LossAgent: {HUGE + 8:,} characters in all, the first and last 8,192 kept ...]' in text


def test_record_and_history_keep_bounded_prompts_and_answers():
    history = History()
    for stage in range(1, 4):
        record = StageRecord(stage, stage * 4, {'L1': 1.0}, {'PSNR': [20.0]})
        history.append(record)
        decision = Decision(
            weights={'L1': 2.0},
            policy='llm',
            prompts=[{'image': 0, 'messages': [{'role': 'user', 'content': 'p' * HUGE}]}],
            answers=[{'image': 0, 'text': 'a' * HUGE, 'error': 'e' * HUGE}],
            info={'thoughts': ['t' * HUGE]},
        )
        record.record_decision(decision, ['L1'], traceback='T' * HUGE)
        line = json.dumps(record.to_dict())
        assert len(line) < 6 * TEXT_LIMIT, len(line)
        assert str(HUGE) in line.replace(',', '')  # the full length is noted
    assert [bool(r.answers) for r in history] == [False, False, True]  # older ones are in the log
    assert record.weights_after == {'L1': 2.0}


def test_a_record_keeps_a_reprompt_once_and_its_prompts_within_the_budget():
    first = [{'role': 'system', 'content': 's' * 500}, {'role': 'user', 'content': 'u' * 40_000}]
    again = first + [{'role': 'assistant', 'content': 'a' * HUGE}, {'role': 'user', 'content': 'fix it'}]
    kept = bounded_prompts(
        [{'image': i, 'attempt': k, 'messages': m} for i in range(3) for k, m in enumerate([first, again])]
    )
    assert [p.get('earlier_messages') for p in kept] == [None, 2] * 3
    assert [m['role'] for m in kept[1]['messages']] == ['assistant', 'user']
    assert kept[1]['messages'][1]['content'] == 'fix it'
    assert len(json.dumps(kept)) < 2 * PROMPT_BUDGET


def test_the_reprompt_sends_back_a_clipped_answer():
    from test_agent_llm import history, policy

    def responder(body, i):
        return 'W' * HUGE if len(body['messages']) == 2 else deterministic_responder(body, i)

    with OpenAIStubServer(responder) as srv:
        decision = policy(srv.base_url, per_image=False).decide(history())
        again = [b for b in srv.requests if len(b['messages']) == 4]
    assert decision.fallback is None
    assert len(again) == 1 and len(again[0]['messages'][2]['content']) < TEXT_LIMIT + 100


def hostile(body: dict, index: int):
    """A server that misbehaves in turn: garbage, a 500, a stall past the timeout, a 2 MB answer,
    truncated JSON, and a good answer."""
    kind = index % 6
    if kind == 0:
        return b'\x00garbage{{'
    if kind == 1:
        return 500, '{"error": "overloaded"}'
    if kind == 2:
        time.sleep(0.6)
        return deterministic_responder(body, index)
    if kind == 3:
        return 'Sure! ' + 'blah ' * (HUGE // 5)
    if kind == 4:
        return b'{"choices": [{"message": {"content": "Weights: L1:SSIM=1:'
    return deterministic_responder(body, index)


def rss_mb(pid: int) -> float | None:
    try:
        with open(f'/proc/{pid}/status') as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith('VmRSS:'))
    except (OSError, StopIteration):
        return None


def slope(points: list[tuple[int, float]]) -> float:
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def test_300_hostile_boundaries_keep_the_log_small_and_memory_flat(make_run):
    boundaries = 300
    with OpenAIStubServer(hostile) as server:
        opt = tiny_options(
            'hostile',
            stage_iters=1,
            total_iter=boundaries,
            experts={'PSNR': {'metric': 'psnr'}},
            policy={
                'type': 'llm',
                'base_url': server.base_url,
                'model': 'stub',
                'per_image': False,
                'timeout_s': 0.3,
                'retries': 0,
                'backoff_s': 0.0,
            },
        )
        opt['datasets']['train']['gt_size'] = 32
        opt['network_g']['img_size'] = 16
        opt['agent'].update(
            {
                'async': True,
                'num_images': 1,
                'stage_images': False,
                'dataset': {
                    'name': 'v',
                    'type': 'SkimagePhotoDataset',
                    'images': ['chelsea'],
                    'crop_size': 32,
                    'crops_per_side': 1,
                },
            }
        )
        opt['logger']['print_freq'] = 50
        run = make_run(opt)
        log = run.root / 'agent' / 'decisions.jsonl'
        started = time.time()
        err_path = run.yml.with_suffix('.stderr')  # a file: a pipe nobody reads would fill up and block
        with open(err_path, 'w') as err_file:
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / 'train.py'), '-opt', str(run.yml)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err_file,
            )
            samples = []  # (records logged, resident MB)
            while proc.poll() is None and time.time() - started < 550:
                rss = rss_mb(proc.pid)
                if rss is not None and log.exists():
                    samples.append((log.read_bytes().count(b'\n'), rss))
                time.sleep(0.25)
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
        stderr = err_path.read_text()
    assert proc.returncode == 0, stderr[-3000:]
    records = run.records()
    assert len(records) == boundaries + 1
    size_mb = log.stat().st_size / 2**20
    # while it trains: the end of the run plots the experiment (matplotlib, tens of MB once)
    second_half = [(n, rss) for n, rss in samples if boundaries // 2 <= n <= boundaries - 10]
    per_boundary = slope(second_half)
    print(
        f'\n{boundaries} hostile boundaries in {time.time() - started:.0f} s: decisions.jsonl {size_mb:.2f} MB, '
        f'RSS {second_half[0][1]:.0f} -> {second_half[-1][1]:.0f} MB, slope {per_boundary * 1024:.1f} KB/boundary '
        f'over the second half ({len(second_half)} samples)'
    )
    assert size_mb <= 5
    assert per_boundary <= 0.1
    assert max(len(json.dumps(r)) for r in records) < 8 * 16_384
    fallbacks = [r['fallback'] for r in records[1:] if r['fallback']]
    assert fallbacks and len(fallbacks) < boundaries  # it misbehaved, and good answers were applied
    assert any(str(HUGE // 5 * 5 + 6) in json.dumps(r['answers']).replace(',', '') for r in records[1:])
