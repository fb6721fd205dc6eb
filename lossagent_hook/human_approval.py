"""`agent.human_approval: true`: a person approves or edits each proposal before it applies.

After the policy has answered (in the decision's worker thread, so with `agent.async: true`
training goes on meanwhile) the proposal is written to `agent/stage_<k>/proposal.json`: the
stage record as it would be logged, and the deadline. The run board shows it; a person approves
it or edits the weights, which writes `approval.json`:

    {"action": "approve"}                                  # the policy's weights apply
    {"action": "edit", "weights": {"L1": 1.0, "SSIM": 0.2}}  # these apply (checked by check_weights)

After `agent.approval_timeout_s` seconds without an answer the proposal applies. The decision
record says who decided (`decided_by`: 'human' or 'timeout') and keeps the policy's own weights
(`proposed_weights`). A fallback (the policy's answer was unusable, the previous weights are
kept) is not put to a person.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from agent.decision_log import json_safe
from agent.policies import Decision
from agent.record import StageRecord
from agent.stage_files import APPROVAL, PROPOSAL, poll, read_json, remove, stage_dir, write_json
from agent.weights import check_weights
from basicsr.utils import get_root_logger

POLL_S = 0.25


def read_approval(path: Path, proposed: dict[str, float]) -> dict[str, float] | None:
    """The weights a person chose in `approval.json`, None while there is no usable answer."""
    answer = read_json(path)
    if not isinstance(answer, dict):
        return None
    if answer.get('action') == 'approve':
        return dict(proposed)
    weights = answer.get('weights')
    if answer.get('action') == 'edit' and check_weights(weights, list(proposed)) is None:
        return {n: float(weights[n]) for n in proposed}
    return None


def review_decision(decision: Decision, record: StageRecord, options, agent_dir) -> Decision:
    """The decision after a person's review (unchanged without `agent.human_approval`)."""
    names = list(record.weights_before)
    if not options.human_approval or decision.fallback is not None or check_weights(decision.weights, names):
        return decision  # nothing to approve: record_decision keeps the weights and says why
    proposed = {n: float(decision.weights[n]) for n in names}
    folder = stage_dir(agent_dir, record.stage)
    logger = get_root_logger()
    try:
        remove(folder / APPROVAL)  # an answer left by a run that was resumed is not an answer to this proposal
        preview = copy.deepcopy(record)
        preview.record_decision(decision, names)
        now, timeout_s = time.time(), options.approval_timeout_s
        write_json(
            folder / PROPOSAL,
            json_safe(
                {
                    'record': preview.to_dict(),
                    'proposed': proposed,
                    'since': now,
                    'timeout_s': timeout_s,
                    'deadline': now + timeout_s,
                }
            ),
        )
    except OSError as err:  # a full disk must not cost the decision
        logger.warning(f'Stage {record.stage}: could not ask for approval ({err!r}); the proposal applies')
        return decision
    logger.info(
        f'Stage {record.stage}: waiting up to {timeout_s:g} s for a person to approve or edit '
        f'the proposal {proposed} (run board, or {folder / APPROVAL})'
    )
    try:
        chosen = poll(lambda: read_approval(folder / APPROVAL, proposed), timeout_s, POLL_S)
    finally:
        remove(folder / PROPOSAL)
    decision.proposed_weights = proposed
    if chosen is None:
        decision.decided_by = 'timeout'
    else:
        decision.decided_by, decision.weights = 'human', chosen
    return decision
