"""The files behind the run board: stage images, human feedback with ratings, approvals, who decided."""

import json
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from agent.human_feedback import HumanFeedback, read_human_feedback, wait_for_human_feedback
from agent.policies import Decision
from agent.record import ExpertInfo, StageRecord
from agent.stage_files import APPROVAL, PROPOSAL, WAITING, image_file, read_json, stage_dir, write_json
from lossagent_errors import OptionError, UserError
from lossagent_options import AgentOptions
from lossagent_hook.human_approval import review_decision
from lossagent_hook.stage_images import write_stage_images
from training import tiny_options

NAMES = ['L1', 'SSIM']


def pending_record(stage=1) -> StageRecord:
    return StageRecord(
        stage,
        30,
        {'L1': 1.0, 'SSIM': 0.5},
        {'NIQE': [5.0, 6.0]},
        experts=[ExpertInfo('NIQE', True)],
        images=['a', 'b'],
        policy='llm',
    )


def test_decided_by_and_proposed_weights_round_trip():
    record = pending_record()
    weights = record.record_decision(
        Decision({'L1': 1.0, 'SSIM': 0.2}, 'llm', decided_by='human', proposed_weights={'L1': 1.0, 'SSIM': 0.9}), NAMES
    )
    assert weights == {'L1': 1.0, 'SSIM': 0.2}
    line = json.loads(json.dumps(record.to_dict()))
    assert line['decided_by'] == 'human' and line['proposed_weights'] == {'L1': 1.0, 'SSIM': 0.9}
    assert StageRecord.from_dict(line) == record
    plain = pending_record()
    plain.record_decision(Decision({'L1': 1.0, 'SSIM': 0.4}, 'llm'), NAMES)
    assert plain.decided_by == 'policy' and 'proposed_weights' not in plain.to_dict()
    initial = StageRecord(0, 0, {'L1': 1.0}, {})
    assert 'decided_by' not in initial.to_dict() and StageRecord.from_dict(initial.to_dict()).decided_by is None


def test_human_feedback_text_and_ratings(tmp_path):
    text, ratings = tmp_path / 'feedback.txt', tmp_path / 'ratings.json'
    assert read_human_feedback([text], ratings) is None
    write_json(ratings, {'ratings': [4, None, 9], 'text_follows': True})
    assert read_human_feedback([text], ratings) is None  # the text is still on its way
    text.write_text('Too much ringing on the fur.\n')
    given = read_human_feedback([text], ratings)
    assert given == HumanFeedback('Too much ringing on the fur.', [4, None, None])  # 9 is not a rating
    assert given.for_image(0) == 'Too much ringing on the fur. Rating of this image: 4 of 5 (5 is best).'
    assert given.for_image(1) == given.for_image(5) == 'Too much ringing on the fur.'
    text.unlink()
    write_json(ratings, {'ratings': [None, 2], 'text_follows': False})
    assert read_human_feedback([text], ratings).for_image(1) == 'Rating of this image: 2 of 5 (5 is best).'
    assert read_human_feedback([text], ratings).for_image(0) is None


def test_the_wait_is_announced_with_its_deadline_and_withdrawn(tmp_path):
    waiting, text = tmp_path / WAITING, tmp_path / 'feedback.txt'
    seen = {}

    def person():
        deadline = time.monotonic() + 5
        while not waiting.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.update(read_json(waiting) or {})
        text.write_text('sharper please')

    threading.Thread(target=person).start()
    start = time.time()
    given = wait_for_human_feedback(
        [text],
        tmp_path / 'ratings.json',
        timeout_s=30,
        poll_s=0.05,
        waiting_path=waiting,
        notice={'expert': 'Human', 'stage': 3},
    )
    assert given.text == 'sharper please' and not waiting.exists()
    assert seen['expert'] == 'Human' and seen['stage'] == 3 and seen['timeout_s'] == 30
    assert start <= seen['since'] and seen['deadline'] == pytest.approx(seen['since'] + 30)
    assert (
        wait_for_human_feedback([tmp_path / 'none.txt'], tmp_path / 'none.json', timeout_s=0, waiting_path=waiting)
        is None
        and not waiting.exists()
    )  # 0: no notice at all


def review(tmp_path, decision, answer=None, timeout_s=5.0, enabled=True):
    options = SimpleNamespace(human_approval=enabled, approval_timeout_s=timeout_s)
    folder = stage_dir(tmp_path, 1)
    write_json(folder / APPROVAL, {'action': 'approve'})  # left over from before a resume: must be ignored
    seen = {}

    def person():
        deadline = time.monotonic() + 5
        while not (folder / PROPOSAL).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen['proposal'] = read_json(folder / PROPOSAL)
        if answer is not None:
            write_json(folder / APPROVAL, answer)

    thread = threading.Thread(target=person)
    thread.start()
    decision = review_decision(decision, pending_record(), options, tmp_path)
    thread.join()
    assert not (folder / PROPOSAL).exists()
    return decision, seen.get('proposal')


def test_approval_edit_approve_and_timeout(tmp_path):
    edited, proposal = review(
        tmp_path,
        Decision({'L1': 1.0, 'SSIM': 0.9}, 'llm', answers=['<b>raw</b>']),
        {'action': 'edit', 'weights': {'L1': 1.0, 'SSIM': 0.125}},
    )
    assert edited.weights == {'L1': 1.0, 'SSIM': 0.125} and edited.decided_by == 'human'
    assert edited.proposed_weights == {'L1': 1.0, 'SSIM': 0.9}
    preview = StageRecord.from_dict(proposal['record'])  # the record as it would be logged
    assert preview.weights_after == {'L1': 1.0, 'SSIM': 0.9} and preview.answers == ['<b>raw</b>']
    assert proposal['deadline'] - proposal['since'] == pytest.approx(5.0)

    approved, _ = review(tmp_path, Decision({'L1': 1.0, 'SSIM': 0.9}, 'llm'), {'action': 'approve'})
    assert approved.weights == {'L1': 1.0, 'SSIM': 0.9} and approved.decided_by == 'human'

    start = time.monotonic()
    bad = {'action': 'edit', 'weights': {'L1': -1.0, 'SSIM': 0.1}}  # not usable: as if nobody answered
    timed_out, _ = review(tmp_path, Decision({'L1': 1.0, 'SSIM': 0.9}, 'llm'), bad, timeout_s=0.6)
    assert timed_out.decided_by == 'timeout' and timed_out.weights == {'L1': 1.0, 'SSIM': 0.9}
    assert 0.5 < time.monotonic() - start < 3


def test_no_approval_asked_for_fallbacks_or_without_the_option(tmp_path):
    fallback = Decision({}, 'llm', fallback='server down')
    assert (
        review_decision(
            fallback, pending_record(), SimpleNamespace(human_approval=True, approval_timeout_s=9), tmp_path
        ).decided_by
        == 'policy'
    )
    plain = Decision({'L1': 1.0, 'SSIM': 0.9}, 'llm')
    assert review_decision(plain, pending_record(), SimpleNamespace(human_approval=False), tmp_path) is plain
    assert not stage_dir(tmp_path, 1).exists()


def test_stage_images_lq_gt_once_outputs_every_stage(tmp_path):
    names = ['set/chelsea 00.png', 'set/coffee_01']
    val_set = SimpleNamespace(
        names=names, lqs=[torch.rand(3, 48, 48) for _ in names], gts=[torch.rand(3, 96, 96) for _ in names]
    )
    outputs = [torch.rand(3, 96, 96) for _ in names]
    started = time.perf_counter()
    write_stage_images(tmp_path, 0, val_set, outputs)
    first = time.perf_counter() - started
    assert [image_file(i, n) for i, n in enumerate(names)] == ['00_chelsea_00.png', '01_coffee_01.png']
    manifest = read_json(tmp_path / 'validation' / 'images.json')
    assert manifest['images'][0] == {
        'name': names[0],
        'file': '00_chelsea_00.png',
        'lq': 'validation/lq_00_chelsea_00.png',
        'gt': 'validation/gt_00_chelsea_00.png',
    }
    lq_written = (tmp_path / 'validation' / 'lq_00_chelsea_00.png').stat().st_mtime_ns
    write_stage_images(tmp_path, 1, val_set, outputs)
    assert (tmp_path / 'validation' / 'lq_00_chelsea_00.png').stat().st_mtime_ns == lq_written  # once
    assert sorted(p.name for p in (tmp_path / 'stage_1').iterdir()) == ['00_chelsea_00.png', '01_coffee_01.png']
    write_stage_images(tmp_path, 2, val_set, outputs, enabled=False)
    assert not (tmp_path / 'stage_2').exists()
    assert first < 2.0


def test_the_new_agent_options_are_strict():
    opt = tiny_options('x')
    options = AgentOptions.from_opt(opt)
    assert options.stage_images is True and options.human_approval is False and options.board is None
    opt['agent'].update(human_approval=True, approval_timeout_s=30, board=True)
    options = AgentOptions.from_opt(opt)
    assert options.approval_timeout_s == 30 and options.board == {
        'port': 8080,
        'host': '127.0.0.1',
        'token_env': 'LOSSAGENT_BOARD_TOKEN',
    }
    for change, message in [
        ({'stage_images': 'yes'}, r'agent\.stage_images: got'),
        ({'human_approvel': True}, r'did you mean `human_approval`'),
        ({'approval_timeout_s': 7200}, r'agent\.approval_timeout_s: 7200 s is not shorter'),
        ({'board': {'prot': 1}}, r'agent\.board\.prot: unknown option \(did you mean `port`'),
        ({'board': {'port': 70000}}, r'agent\.board\.port: got 70000'),
    ]:
        bad = tiny_options('x')
        bad['agent'].update(human_approval=True, **change)
        with pytest.raises(OptionError, match=message):
            AgentOptions.from_opt(bad)
    exposed = tiny_options('x')
    exposed['agent']['board'] = {'host': '0.0.0.0', 'token_env': 'LOSSAGENT_TEST_UNSET_TOKEN'}
    with pytest.raises(UserError, match=r'agent\.board\.host: 0\.0\.0\.0 is reachable from other machines'):
        AgentOptions.from_opt(exposed)
