"""`decisions.jsonl`: one stage record per line, append-only, never torn.

Each line is written with a single `write` of the whole line and fsync'd, so a crash
leaves either the whole record or nothing; a partial last line (power loss) is ignored by
the reader and cut off by `supersede_after`. A write that fails (disk full) cuts the file back to
where it was and raises `WriteError` naming it, so a torn line never glues onto the next. On
resume, records past the restored iteration are kept but marked `"superseded": true`, so what
happened stays visible and nothing is counted twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from collections.abc import Iterator

from lossagent_errors import WriteError

from .record import StageRecord


def json_safe(value):
    """NaN/inf are not JSON: store them as None (scores are marked invalid anyway)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class DecisionLog:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: StageRecord | dict) -> None:
        line = record.to_dict() if isinstance(record, StageRecord) else record
        text = json.dumps(json_safe(line), ensure_ascii=False, allow_nan=False) + '\n'
        data = text.encode('utf-8')
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f'wrote {written} of {len(data)} bytes')
            os.fsync(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise WriteError(f'could not append to {self.path}: {err}; the log is as it was before') from None
        finally:
            os.close(fd)

    def supersede_after(self, iteration: int, pending_stage: int | None = None) -> int:
        """Mark what was written after the restored state as superseded: records of later boundaries,
        and the record of `pending_stage`, a boundary whose decision was still out (an asynchronous
        answer, a lookahead window) when the state was saved. Returns how many."""
        if not self.path.exists():
            return 0
        lines = list(read_lines(self.path, include_superseded=True))
        changed = 0
        for line in lines:
            later = line.get('iteration', 0) > iteration or line.get('stage') == pending_stage
            if later and not line.get('superseded'):
                line['superseded'] = True
                changed += 1
        tmp = self.path.with_suffix('.jsonl.tmp')
        try:
            with open(tmp, 'w', encoding='utf-8') as f:
                for line in lines:
                    f.write(json.dumps(line, ensure_ascii=False) + '\n')
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise WriteError(f'could not rewrite {self.path}: {err}; the log is as it was before') from None
        return changed


def read_lines(path, include_superseded: bool = False) -> Iterator[dict]:
    """The raw JSON lines of a decision log in order; a torn or corrupt line is skipped."""
    with open(path, encoding='utf-8') as f:
        for line in f:
            if not line.endswith('\n'):
                break  # torn last line
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (include_superseded or not record.get('superseded')):
                yield record


def read_records(path, include_superseded: bool = False) -> Iterator[StageRecord]:
    """The stage records of a decision log in order; lines that are not records are skipped."""
    for line in read_lines(path, include_superseded):
        try:
            yield StageRecord.from_dict(line)
        except (KeyError, TypeError, ValueError):
            continue


def log_path(path) -> Path:
    """experiments/<name>, its agent/ folder, or the decisions.jsonl itself."""
    path = Path(path)
    if path.suffix == '.jsonl':
        return path
    if (path / 'decisions.jsonl').exists():
        return path / 'decisions.jsonl'
    return path / 'agent' / 'decisions.jsonl'


def current_records(path) -> list[StageRecord]:
    """A run's current records (not superseded), one per stage (a later line for the same stage wins),
    ordered by iteration; [] when there is no log yet."""
    path = log_path(path)
    if not path.exists():
        return []
    by_stage: dict[int, StageRecord] = {}
    for record in read_records(path):
        by_stage[record.stage] = record
    return sorted(by_stage.values(), key=lambda r: (r.iteration, r.stage))
