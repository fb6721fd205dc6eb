"""Optional human feedback: text (and a 1-5 rating per image) a person gives while the run trains.

The glue decides where (`experiments/<name>/agent/stage_<k>/feedback.txt` and `ratings.json`, or
a fixed text file from the YAML; see agent/stage_files.py) and passes it in as an expert of kind
'text'. A person writes the files by hand or through the run board (`python -m agent.runs.board`).
While the `human` expert waits it leaves `waiting.json` (its deadline) so the board can show a
countdown. An unattended run never waits longer than `timeout_s` (0 = look once).

`ratings.json` is `{"ratings": [4, null, 2, ...], "text_follows": false}`, one entry per
validation image; the board writes it before `feedback.txt` and says `text_follows: true` when a
text comes next, so a reader never takes the ratings alone while the text is being written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence

from .stage_files import RATING_RANGE, poll, read_json, rating_or_none, remove, write_json

MAX_CHARS = 4000  # a prompt budget, not a file size limit


@dataclass(frozen=True)
class HumanFeedback:
    """What a person said about one stage: a text for all images and/or a rating per image."""

    text: str | None = None
    ratings: list[int | None] = field(default_factory=list)

    def for_image(self, index: int) -> str | None:
        """What the agent reads for image `index`: the text, then its rating; None when neither."""
        rating = self.ratings[index] if index < len(self.ratings) else None
        parts = [self.text] if self.text else []
        if rating is not None:
            parts.append(f'Rating of this image: {rating} of {RATING_RANGE[1]} ({RATING_RANGE[1]} is best).')
        return ' '.join(parts) or None


def read_feedback(paths: Sequence[str | Path]) -> str | None:
    """The text of the first existing, non-empty file among `paths`, else None."""
    for path in paths:
        try:
            text = Path(path).read_text(encoding='utf-8', errors='replace').strip()
        except OSError:  # missing, a folder, unreadable, being replaced: not feedback (yet)
            continue
        if text:
            return text[:MAX_CHARS]
    return None


def read_ratings(path: str | Path) -> tuple[list[int | None], bool]:
    """(ratings, text_follows) of a `ratings.json`; ([], False) when there is none."""
    value = read_json(path)
    if not isinstance(value, dict) or not isinstance(value.get('ratings'), list):
        return [], False
    return [rating_or_none(v) for v in value['ratings']], value.get('text_follows') is True


def read_human_feedback(paths: Sequence[str | Path], ratings_path: str | Path | None = None) -> HumanFeedback | None:
    """The feedback given so far, None while there is none (or its text is still to come)."""
    text = read_feedback(paths)
    ratings, text_follows = read_ratings(ratings_path) if ratings_path is not None else ([], False)
    if text is None and (text_follows or not any(r is not None for r in ratings)):
        return None
    return HumanFeedback(text, ratings)


def wait_for_feedback(paths: Sequence[str | Path], timeout_s: float = 0.0, poll_s: float = 1.0) -> str | None:
    """Poll `paths` until one holds text or `timeout_s` passes; None on timeout."""
    return poll(lambda: read_feedback(paths), timeout_s, poll_s)


def wait_for_human_feedback(
    paths: Sequence[str | Path],
    ratings_path: str | Path,
    timeout_s: float = 0.0,
    poll_s: float = 1.0,
    waiting_path: str | Path | None = None,
    notice: dict | None = None,
) -> HumanFeedback | None:
    """`read_human_feedback` until there is some or `timeout_s` passes. While it waits (timeout_s > 0)
    `waiting_path` holds `notice` plus the wall-clock `deadline` (seconds since the epoch)."""
    if waiting_path is not None and timeout_s > 0:
        now = time.time()
        write_json(
            waiting_path,
            {**(notice or {}), 'since': now, 'timeout_s': float(timeout_s), 'deadline': now + float(timeout_s)},
        )
    try:
        return poll(lambda: read_human_feedback(paths, ratings_path), timeout_s, poll_s)
    finally:
        if waiting_path is not None:
            remove(waiting_path)
