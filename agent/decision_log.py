"""`decisions.jsonl`: one JSON line per stage boundary, append-only, never torn.

Each line is written with a single `write` of the whole line and fsync'd, so a crash
leaves either the whole record or nothing; a partial last line (power loss) is ignored by
the reader and cut off by `supersede_after`. On resume, records past the restored
iteration are kept but marked `"superseded": true`, so what happened stays visible and
nothing is counted twice.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterator


def _json_safe(value):
    """NaN/inf are not JSON: store them as None (scores are marked invalid anyway)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class DecisionLog:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        line = json.dumps(_json_safe(record), ensure_ascii=False, allow_nan=False) + '\n'
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode('utf-8'))
            os.fsync(fd)
        finally:
            os.close(fd)

    def supersede_after(self, iteration: int) -> int:
        """Mark records with `iteration` > the restored one as superseded; returns how many."""
        if not self.path.exists():
            return 0
        records = list(read_records(self.path, include_superseded=True))
        changed = 0
        for record in records:
            if record.get('iteration', 0) > iteration and not record.get('superseded'):
                record['superseded'] = True
                changed += 1
        tmp = self.path.with_suffix('.jsonl.tmp')
        with open(tmp, 'w', encoding='utf-8') as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + '\n')
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return changed


def read_records(path, include_superseded: bool = False) -> Iterator[dict]:
    """The records of a decision log in order; a torn or corrupt line is skipped."""
    with open(path, encoding='utf-8') as f:
        for line in f:
            if not line.endswith('\n'):
                break  # torn last line
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if include_superseded or not record.get('superseded'):
                yield record
