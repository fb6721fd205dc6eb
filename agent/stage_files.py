"""The files of a run's `agent/` folder that people and the run board read and write.

    agent/decisions.jsonl              one stage record per line (agent/decision_log.py)
    agent/validation/images.json       the validation images: names, LQ and GT files (written once)
    agent/validation/lq_00_<stem>.png  the network's inputs, as the agent sees them
    agent/validation/gt_00_<stem>.png  their ground truth (absent for LQ-only data sets)
    agent/stage_<k>/00_<stem>.png      stage k's restorations, same order and crop
    agent/stage_<k>/feedback.txt       a person's words for stage k (read by the `human` expert)
    agent/stage_<k>/ratings.json       a person's 1-5 rating per image (optional)
    agent/stage_<k>/waiting.json       present while the `human` expert waits: its deadline
    agent/stage_<k>/proposal.json      present while a proposal waits for approval (agent.human_approval)
    agent/stage_<k>/approval.json      a person's answer to it: approve, or edited weights

The run writes every file by writing a temporary file beside it and renaming it, so a reader (the
board, an image viewer, a copy made while the run trains) never sees half of one. Nothing here
imports torch: the board reads these files on a machine without it.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Callable

PathLike = str | Path
T = TypeVar('T')

VALIDATION = 'validation'
MANIFEST = 'images.json'
FEEDBACK = 'feedback.txt'
RATINGS = 'ratings.json'
WAITING = 'waiting.json'
PROPOSAL = 'proposal.json'
APPROVAL = 'approval.json'
RATING_RANGE = (1, 5)
_STAGE_DIR = re.compile(r'stage_(\d+)$')


def stage_dir(agent_dir: PathLike, stage: int) -> Path:
    return Path(agent_dir) / f'stage_{int(stage)}'


def stage_of(folder: PathLike) -> int | None:
    """5 for `.../stage_5`, None for any other folder name."""
    match = _STAGE_DIR.match(Path(folder).name)
    return int(match.group(1)) if match else None


def image_file(index: int, name: str) -> str:
    """'03_chelsea_1_0.png': the index keeps the order and makes equal stems distinct."""
    stem = re.sub(r'[^A-Za-z0-9._-]+', '_', Path(str(name)).stem)[:80] or 'image'
    return f'{index:02d}_{stem}.png'


def write_atomic(path: PathLike, data: bytes | str) -> Path:
    """Write `data` to a temporary file next to `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_bytes(data.encode('utf-8') if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def write_json(path: PathLike, value: Any) -> Path:
    return write_atomic(path, json.dumps(value, ensure_ascii=False, allow_nan=False, indent=1) + '\n')


def read_json(path: PathLike) -> Any | None:
    """The JSON value in `path`; None when it is missing, unreadable or not JSON (being written)."""
    try:
        return json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None


def remove(path: PathLike) -> None:
    Path(path).unlink(missing_ok=True)


def rating_or_none(value) -> int | None:
    """A valid rating (an int in 1..5), else None."""
    low, high = RATING_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def poll(read: Callable[[], T | None], timeout_s: float, poll_s: float = 1.0) -> T | None:
    """Call `read` until it returns something (not None) or `timeout_s` passes (0: once)."""
    deadline = time.monotonic() + max(0.0, float(timeout_s))
    while True:
        value = read()
        if value is not None:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(max(poll_s, 0.01), left))
