"""Optional human feedback: text a person drops into a file while the run trains.

The glue decides where (`experiments/<name>/agent/stage_<k>/feedback.txt`, or a fixed file
from the YAML) and passes it in as an expert of kind 'text'. This module only reads; it
never blocks an unattended run for longer than `timeout_s` (0 = look once).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence, Union

MAX_CHARS = 4000  # a prompt budget, not a file size limit


def read_feedback(paths: Sequence[Union[str, Path]]) -> Optional[str]:
    """The text of the first existing, non-empty file among `paths`, else None."""
    for path in paths:
        try:
            text = Path(path).read_text(encoding='utf-8', errors='replace').strip()
        except OSError:  # missing, a folder, unreadable, being replaced: not feedback (yet)
            continue
        if text:
            return text[:MAX_CHARS]
    return None


def wait_for_feedback(paths: Sequence[Union[str, Path]], timeout_s: float = 0.0,
                      poll_s: float = 1.0) -> Optional[str]:
    """Poll `paths` until one holds text or `timeout_s` passes; None on timeout."""
    deadline = time.monotonic() + max(0.0, float(timeout_s))
    while True:
        text = read_feedback(paths)
        if text is not None:
            return text
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(max(poll_s, 0.01), left))
