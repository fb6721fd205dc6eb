"""What a person can write through the board, checked before anything is written.

- feedback for a stage: text (for the `human` expert, `feedback.txt`) and/or a 1-5 rating per
  image (`ratings.json`), for a stage whose expert is waiting now, or for the next stage (read
  when the run gets there: the way to reach an expert with `timeout_s: 0`);
- an answer to a proposal waiting for approval (`approval.json`): approve, or edited weights.

File formats: agent/stage_files.py, agent/human_feedback.py, lossagent_hook/human_approval.py.
"""

from __future__ import annotations

import time

from ...human_feedback import MAX_CHARS
from ...options import as_number
from ...stage_files import APPROVAL, FEEDBACK, RATINGS, rating_or_none, stage_dir, write_atomic, write_json
from ...weights import check_weights
from .runs import RunFolder


class ActionError(Exception):
    """A request the board refuses: `status` is the HTTP status, the message says why in one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _ratings(value, count: int) -> list[int | None]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > max(count, 0):
        raise ActionError(400, f'ratings: expected a list of at most {count} entries (one per image)')
    ratings = [rating_or_none(v) for v in value]
    if any(v is not None and r is None for v, r in zip(value, ratings)):
        raise ActionError(400, 'ratings: each rating is an integer from 1 to 5, or null')
    return ratings


def give_feedback(run: RunFolder, stage: int, text, ratings) -> dict:
    """Write a person's feedback for `stage`; what was written."""
    now = time.time()
    waiting = run.waiting(stage, now)
    if waiting is None and stage != run.last_stage() + 1:
        raise ActionError(
            409, f'stage {stage} is not waiting for feedback and is not the next stage ({run.last_stage() + 1})'
        )
    if text is not None and not isinstance(text, str):
        raise ActionError(400, 'text: expected a string')
    text = (text or '').strip()
    if len(text) > MAX_CHARS:
        raise ActionError(413, f'text: {len(text)} characters; at most {MAX_CHARS} reach the agent')
    ratings = _ratings(ratings, len(run.validation_images()) or len(ratings or []))
    if not text and not any(r is not None for r in ratings):
        raise ActionError(400, 'give a text, a rating, or both')
    folder = stage_dir(run.agent_dir, stage)
    if ratings:  # first, so a reader never takes the ratings alone while the text is on its way
        write_json(folder / RATINGS, {'ratings': ratings, 'text_follows': bool(text), 'at': now})
    if text:
        write_atomic(folder / FEEDBACK, text + '\n')
    return {'stage': stage, 'text': text or None, 'ratings': ratings, 'waiting': waiting is not None}


def answer_proposal(run: RunFolder, stage: int, action, weights) -> dict:
    """Approve the proposal of `stage`, or replace its weights; what was written."""
    pending = run.pending_approval(stage)
    if pending is None:
        raise ActionError(409, f'stage {stage} has no proposal waiting for approval')
    names = list(pending['proposed'])
    if action == 'approve':
        answer = {'action': 'approve'}
    elif action == 'edit':
        if isinstance(weights, dict):  # numbers typed in a form may come as strings
            weights = {
                k: as_number(v) if isinstance(v, str) and as_number(v) is not None else v for k, v in weights.items()
            }
        problem = check_weights(weights, names)
        if problem:
            raise ActionError(400, f'weights: {problem}')
        answer = {'action': 'edit', 'weights': {n: float(weights[n]) for n in names}}
    else:
        raise ActionError(400, f"action: got {action!r}; expected 'approve' or 'edit'")
    write_json(stage_dir(run.agent_dir, stage) / APPROVAL, {**answer, 'by': 'human', 'at': time.time()})
    return {'stage': stage, **answer}
