"""The board's HTTP side, a real server on 127.0.0.1 (`python -m agent.runs.board`) over run folders on disk."""

import http.client
import json
import os
import time

import pytest

from agent.decision_log import DecisionLog
from agent.stage_files import PROPOSAL, RATINGS, WAITING, stage_dir, write_json
from board_helpers import SCRIPT, Board, record, write_run

TOKEN = 'test-token-5f1c'


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp('board')
    runs = [write_run(base / 'run_a'), write_run(base / 'run_b', stages=1)]
    (base / 'outside.png').write_bytes(b'\x89PNG not yours')
    os.symlink(base / 'outside.png', runs[0] / 'agent' / 'link.png')
    board = Board(*runs, token=TOKEN)
    yield board, runs
    board.stop()


def request(board, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection('127.0.0.1', board.port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={'Content-Type': 'application/json', **(headers or {})})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    return response.status, raw, response


def get_json(board, path):
    status, raw, _ = request(board, 'GET', path)
    assert status == 200, raw
    return json.loads(raw)


def test_runs_stages_and_images(served):
    board, runs = served
    assert '2 runs: run_a, run_b' in board.first_line and '?token=' in board.first_line
    listing = get_json(board, '/api/runs')
    assert listing == {'runs': [{'id': '0', 'name': 'run_a'}, {'id': '1', 'name': 'run_b'}], 'writable': True}
    run = get_json(board, '/api/runs/0')
    assert [s['stage'] for s in run['stages']] == [0, 1]
    stage = run['stages'][1]
    assert stage['weights_after'] == {'L1': 1.0, 'SSIM': 0.25} and stage['decided_by'] == 'policy'
    assert stage['mean_scores']['NIQE'] == 4.5 and 'prompts' not in stage  # the summary leaves them out
    assert stage['image_urls'] == [
        '/files/0/agent/stage_1/00_chelsea_00.png',
        '/files/0/agent/stage_1/01_chelsea_01.png',
    ]
    assert run['images'][0]['lq'] == '/files/0/agent/validation/lq_00_chelsea_00.png'
    status, raw, response = request(board, 'GET', stage['image_urls'][0])
    assert status == 200 and raw.startswith(b'\x89PNG') and response.getheader('content-type') == 'image/png'
    detail = get_json(board, '/api/runs/0/stages/1')
    assert detail['prompts'][0]['messages'][0]['content'] == f'prompt {SCRIPT}'  # JSON, as it was logged
    assert request(board, 'GET', '/api/runs/0/stages/7')[0] == 404
    assert request(board, 'GET', '/api/runs/9')[0] == 404


@pytest.mark.parametrize(
    'path',
    [
        '/files/0/../run_b/agent/stage_0/00_chelsea_00.png',
        '/files/0/../../outside.png',
        '/files/0/agent/../../outside.png',
        '/files/0/%2e%2e/%2e%2e/outside.png',
        '/files/0/..%2f..%2foutside.png',
        '/files/0//etc/passwd',
        '/files/0/%2fetc%2fpasswd',
        '/files/0/agent/link.png',
        '/files/0/train.yml',
        '/files/0/agent/decisions.jsonl',
        '/files/0/agent/%00.png',
        '/static/../board/runs.py',
        '/files/0/',
    ],
)
def test_only_images_inside_the_run_folders_are_served(served, path):
    board, _ = served
    status, raw, _ = request(board, 'GET', path)
    assert status == 404, (path, raw[:200])
    assert b'not yours' not in raw and b'root:' not in raw and b'secret' not in raw


def test_safe_headers_host_check_and_a_page_without_inline_script(served):
    board, _ = served
    status, raw, response = request(board, 'GET', '/')
    assert status == 200 and b'<script src="/static/board.js"' in raw
    assert b'<script>' not in raw  # no inline script: the policy below can forbid them all
    csp = response.getheader('content-security-policy')
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and 'unsafe-inline' not in csp
    assert response.getheader('x-content-type-options') == 'nosniff'
    assert request(board, 'GET', '/api/runs', headers={'Host': 'evil.example:80'})[0] == 400  # DNS rebinding


def test_writes_need_the_token_and_are_checked(served):
    board, runs = served
    agent = runs[0] / 'agent'
    path = '/api/runs/0/stages/2/feedback'  # the next stage: feedback read when the run gets there
    body = {'text': 'Too much ringing', 'ratings': [4, None]}
    assert request(board, 'POST', path, body)[0] == 403
    assert request(board, 'POST', path, body, {'X-Board-Token': 'wrong'})[0] == 403
    auth = {'X-Board-Token': TOKEN}
    for bad, status in [
        ({'text': 'x', 'ratings': [7]}, 400),
        ({'text': 'x', 'ratings': [1, 2, 3]}, 400),
        ({'text': '   '}, 400),
        ({'text': 'x' * 5000}, 413),
        ({'text': 5}, 400),
    ]:
        assert request(board, 'POST', path, bad, auth)[0] == status, bad
    assert request(board, 'POST', '/api/runs/0/stages/1/feedback', body, auth)[0] == 409  # stage 1 is decided
    assert not (stage_dir(agent, 2)).exists()  # nothing was written by the refused requests
    status, raw, _ = request(board, 'POST', path, body, auth)
    assert status == 200, raw
    assert (stage_dir(agent, 2) / 'feedback.txt').read_text() == 'Too much ringing\n'
    ratings = json.loads((stage_dir(agent, 2) / RATINGS).read_text())
    assert ratings['ratings'] == [4, None] and ratings['text_follows'] is True


def test_waiting_stage_and_approval(served):
    board, runs = served
    agent, auth = runs[1] / 'agent', {'X-Board-Token': TOKEN}
    write_json(stage_dir(agent, 1) / WAITING, {'expert': 'Human', 'deadline': time.time() + 60, 'timeout_s': 60})
    run = get_json(board, '/api/runs/1')
    waiting = run['stages'][-1]
    assert waiting['stage'] == 1 and waiting['waiting']['expert'] == 'Human'
    assert 50 < waiting['waiting']['remaining_s'] <= 60
    status, _, _ = request(board, 'POST', '/api/runs/1/stages/1/feedback', {'ratings': [None, 2]}, auth)
    assert status == 200 and json.loads((stage_dir(agent, 1) / RATINGS).read_text())['text_follows'] is False
    (stage_dir(agent, 1) / WAITING).unlink()

    proposal = record(1, 1.0, 0.5, 0.8, [4.0, 5.0])
    proposal.weights_after, proposal.applied_iteration = {'L1': 1.0, 'SSIM': 0.8}, None
    path = '/api/runs/1/stages/1/approval'
    assert request(board, 'POST', path, {'action': 'approve'}, auth)[0] == 409  # nothing proposed yet
    write_json(
        stage_dir(agent, 1) / PROPOSAL,
        {
            'record': proposal.to_dict(),
            'proposed': proposal.weights_after,
            'since': time.time(),
            'deadline': time.time() + 60,
        },
    )
    pending = get_json(board, '/api/runs/1')['stages'][-1]
    assert pending['approval']['proposed'] == {'L1': 1.0, 'SSIM': 0.8} and pending['scores']['NIQE'] == [4.0, 5.0]
    assert get_json(board, '/api/runs/1/stages/1')['answers'][0]['text'].startswith('Weights: L1:SSIM=1:0.8')
    for bad in [
        {'action': 'edit', 'weights': {'L1': 1.0}},
        {'action': 'edit', 'weights': {'L1': 'a', 'SSIM': 1}},
        {'action': 'edit', 'weights': {'L1': 0, 'SSIM': 0}},
        {'action': 'remove'},
    ]:
        assert request(board, 'POST', path, bad, auth)[0] == 400, bad
    status, raw, _ = request(board, 'POST', path, {'action': 'edit', 'weights': {'L1': '1', 'SSIM': '0.125'}}, auth)
    assert status == 200, raw
    answer = json.loads((stage_dir(agent, 1) / 'approval.json').read_text())
    assert answer['action'] == 'edit' and answer['weights'] == {'L1': 1.0, 'SSIM': 0.125} and answer['by'] == 'human'
    assert request(board, 'POST', path, {'action': 'approve'}, auth)[0] == 409  # answered already
    # while the answer is being applied, stage 1 is still the run's newest: feedback goes to stage 2
    (stage_dir(agent, 1) / PROPOSAL).unlink()
    assert get_json(board, '/api/runs/1')['stages'][-1]['stage'] == 1  # being evaluated: shown, with its images
    assert request(board, 'POST', '/api/runs/1/stages/1/feedback', {'text': 'late'}, auth)[0] == 409
    assert request(board, 'POST', '/api/runs/1/stages/2/feedback', {'text': 'next'}, auth)[0] == 200


def read_event(response) -> dict:
    event = {}
    while True:
        raw = response.fp.readline()
        if not raw:
            raise AssertionError('the event stream ended')
        line = raw.decode().rstrip('\n')
        if not line:
            if 'event' in event:
                return event
            continue
        if line.startswith(':') or line.startswith('retry'):
            continue
        key, _, value = line.partition(': ')
        event[key] = value


def test_server_sent_events_announce_a_new_stage(served):
    board, runs = served
    conn = http.client.HTTPConnection('127.0.0.1', board.port, timeout=10)
    conn.request('GET', '/api/events')
    response = conn.getresponse()
    assert response.getheader('content-type').startswith('text/event-stream')
    first = read_event(response)
    assert first['event'] == 'change' and sorted(json.loads(first['data'])['runs']) == ['0', '1']
    started = time.monotonic()
    DecisionLog(runs[0] / 'agent' / 'decisions.jsonl').append(record(5, 1.0, 0.25, 0.3, [3.0, 3.5]))
    event = read_event(response)
    assert json.loads(event['data'])['runs'] == ['0'] and time.monotonic() - started < 3
    conn.close()
    assert [s['stage'] for s in get_json(board, '/api/runs/0')['stages']][-1] == 5


def test_read_only_board_and_bad_command_lines(tmp_path):
    run = write_run(tmp_path / 'run_c', stages=1)
    board = Board(run)
    try:
        assert 'read-only' in board.first_line and '?token=' not in board.first_line
        status, raw, _ = request(board, 'POST', '/api/runs/0/stages/1/feedback', {'text': 'x'}, {'X-Board-Token': ''})
        assert status == 403 and b'read-only' in raw
    finally:
        board.stop()
    import subprocess
    import sys

    for args, message in [
        ([str(tmp_path / 'missing')], 'no such experiment folder'),
        ([str(run), '--host', '0.0.0.0'], 'reachable from other machines; give a --token'),
    ]:
        env = {k: v for k, v in os.environ.items() if k != 'LOSSAGENT_BOARD_TOKEN'}
        proc = subprocess.run(
            [sys.executable, '-m', 'agent.runs.board', *args], capture_output=True, text=True, timeout=60, env=env
        )
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_stopped_board_lets_open_pages_see_the_last_stage(tmp_path):
    """A run writes its last stage about half a second before it stops its board: a page open on it still gets
    the change and can load the stage; a board with no page open stops at once."""
    run = write_run(tmp_path / 'run')
    board = Board(run)
    conn = http.client.HTTPConnection('127.0.0.1', board.port, timeout=10)
    conn.request('GET', '/api/events')
    response = conn.getresponse()
    read_event(response)  # the page's first look
    board.process.terminate()  # what train.py does at the end of training
    DecisionLog(run / 'agent' / 'decisions.jsonl').append(record(5, 1.0, 0.25, 0.3, [3.0, 3.5]))
    assert json.loads(read_event(response)['data'])['runs'] == ['0']
    assert [s['stage'] for s in get_json(board, '/api/runs/0')['stages']][-1] == 5
    conn.close()
    board.process.wait(timeout=10)  # and then it stops

    closed = Board(run)
    started = time.monotonic()
    closed.process.terminate()
    closed.process.wait(timeout=10)
    assert time.monotonic() - started < 1.0  # the last look is only for open pages (poll 0.2 s: 1.4 s)
