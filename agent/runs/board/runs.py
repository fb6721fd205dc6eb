"""What the board knows about a run: everything it reads from the experiment folder, and nothing else.

The stage records come from the decision log (`agent.decision_log.current_records`: superseded
records left out, one per stage); the images, the feedback given and the stages that wait for a
person come from the stage folders (agent/stage_files.py). A stage that is still being decided is
shown as well: while the `human` expert waits (`waiting.json`, no record yet) and while a
proposal waits for approval (`proposal.json`, which holds the record as it would be logged).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from lossagent_errors import UserError

from ...decision_log import current_records, json_safe
from ...human_feedback import read_human_feedback
from ...record import StageRecord
from ...stage_files import (
    APPROVAL,
    FEEDBACK,
    MANIFEST,
    PROPOSAL,
    RATINGS,
    VALIDATION,
    WAITING,
    image_file,
    read_json,
    stage_dir,
    stage_of,
)

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


@dataclass
class RunFolder:
    id: str
    root: Path  # resolved experiments/<name>

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def agent_dir(self) -> Path:
        return self.root / 'agent'

    # ---- files ----------------------------------------------------------------------------
    def url(self, relative: str) -> str:
        return f'/files/{self.id}/{quote(relative)}'

    def file(self, relative: str) -> Path | None:
        """`relative` inside this run's folder as a path to serve, None when it is anything else:
        outside the folder (`..`, an absolute path, a symlink out), not a file, not an image."""
        try:
            path = (self.root / relative).resolve()
        except (OSError, ValueError):  # a NUL byte, a symlink loop
            return None
        if not path.is_relative_to(self.root) or path.suffix.lower() not in IMAGE_SUFFIXES:
            return None
        return path if path.is_file() else None

    def stage_numbers(self) -> list[int]:
        try:
            entries = list(os.scandir(self.agent_dir))
        except OSError:
            return []
        return sorted(k for k in (stage_of(e.name) for e in entries if e.is_dir()) if k is not None)

    def signature(self) -> tuple:
        """Changes whenever something the page shows changes (files are replaced by renames, which
        change their folder's mtime)."""
        log = self.agent_dir / 'decisions.jsonl'
        try:
            size = os.stat(log).st_size
        except OSError:
            size = -1
        return (
            _mtime(self.agent_dir),
            _mtime(log),
            size,
            _mtime(self.agent_dir / VALIDATION),
            tuple((k, _mtime(stage_dir(self.agent_dir, k))) for k in self.stage_numbers()),
        )

    def validation_images(self) -> list[dict]:
        """[{name, file, lq, gt}] with URLs; [] when the run writes no stage images."""
        manifest = read_json(self.agent_dir / VALIDATION / MANIFEST)
        images = manifest.get('images') if isinstance(manifest, dict) else None
        out = []
        for i, item in enumerate(images if isinstance(images, list) else []):
            if not isinstance(item, dict):
                continue
            name = str(item.get('name', i))
            lq, gt = item.get('lq'), item.get('gt')
            out.append(
                {
                    'name': name,
                    'file': image_file(i, name),
                    'lq': self.url(f'agent/{lq}') if isinstance(lq, str) and self.file(f'agent/{lq}') else None,
                    'gt': self.url(f'agent/{gt}') if isinstance(gt, str) and self.file(f'agent/{gt}') else None,
                }
            )
        return out

    def stage_images(self, stage: int, names: list[str]) -> list[str | None]:
        """The URL of each restoration of `stage` (None where no file was written)."""
        rel = [f'agent/stage_{stage}/{image_file(i, n)}' for i, n in enumerate(names)]
        return [self.url(r) if self.file(r) else None for r in rel]

    def feedback(self, stage: int) -> dict | None:
        folder = stage_dir(self.agent_dir, stage)
        given = read_human_feedback([folder / FEEDBACK], folder / RATINGS)
        return {'text': given.text, 'ratings': given.ratings} if given else None

    # ---- stages ---------------------------------------------------------------------------
    def records(self) -> list[StageRecord]:
        return current_records(self.root)

    def waiting(self, stage: int, now: float) -> dict | None:
        """The `human` expert's notice while it waits for feedback on `stage`."""
        notice = read_json(stage_dir(self.agent_dir, stage) / WAITING)
        if not isinstance(notice, dict) or not isinstance(notice.get('deadline'), (int, float)):
            return None
        left = float(notice['deadline']) - now
        return (
            {
                'expert': str(notice.get('expert', 'human')),
                'remaining_s': round(left, 1),
                'timeout_s': notice.get('timeout_s'),
            }
            if left > 0
            else None
        )

    def proposal(self, stage: int, now: float) -> tuple[StageRecord, dict] | None:
        """(the record as it would be logged, {proposed, remaining_s}) while it waits for approval."""
        folder = stage_dir(self.agent_dir, stage)
        value = read_json(folder / PROPOSAL)
        if not isinstance(value, dict) or (folder / APPROVAL).exists():
            return None
        try:
            record = StageRecord.from_dict(value['record'])
            left = float(value['deadline']) - now
            proposed = {str(k): float(v) for k, v in value['proposed'].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return (record, {'proposed': proposed, 'remaining_s': round(left, 1)}) if left > 0 else None

    def pending_approval(self, stage: int) -> dict | None:
        found = self.proposal(stage, time.time())
        return found[1] if found else None

    def summary(self) -> dict:
        """The page's view of the run: every stage without prompts and answers."""
        now = time.time()
        records = {r.stage: r for r in self.records()}
        images = self.validation_images()
        names = [i['name'] for i in images]
        stages = []
        for k in sorted(set(records) | set(self.stage_numbers())):
            record, view = records.get(k), {'stage': k}
            proposal = self.proposal(k, now) if record is None else None
            if proposal is not None:
                record, view['approval'] = proposal
            waiting = self.waiting(k, now) if record is None else None
            if record is None and waiting is None and not self.reached(k):
                continue  # only feedback written ahead for a stage the run has not reached
            if record is not None:
                view.update(record.to_dict())
                for key in ('prompts', 'answers', 'info', 'traceback'):  # the stage's detail has them
                    view.pop(key, None)
                view['thoughts'] = record.info.get('thoughts') or []
                view['per_image'] = record.info.get('per_image') or []
            view['waiting'] = waiting
            view['feedback'] = self.feedback(k)
            view['image_urls'] = self.stage_images(k, record.images if record is not None and record.images else names)
            stages.append(view)
        return json_safe({'id': self.id, 'name': self.name, 'images': images, 'stages': stages})

    def stage_detail(self, stage: int) -> dict | None:
        """One stage with everything: prompts, raw answers, thoughts, the policy's info."""
        record = next((r for r in self.records() if r.stage == stage), None)
        if record is None:
            proposal = self.proposal(stage, time.time())
            record = proposal[0] if proposal else None
        return json_safe(record.to_dict()) if record is not None else None

    def reached(self, stage: int) -> bool:
        """The run has evaluated `stage` or is evaluating it: its folder has the restorations or a
        notice (a folder with only feedback written ahead has not been reached)."""
        try:
            files = list(stage_dir(self.agent_dir, stage).iterdir())
        except OSError:
            return False
        return any(p.suffix == '.png' or p.name in (WAITING, PROPOSAL, APPROVAL) for p in files)

    def last_stage(self) -> int:
        """The newest stage the run has reached (recorded or being evaluated); -1 before stage 0."""
        return max([r.stage for r in self.records()] + [k for k in self.stage_numbers() if self.reached(k)], default=-1)


def find_runs(paths: list) -> list[RunFolder]:
    """Run folders from the command line: `experiments/<name>` itself, or a folder of runs (each
    subfolder with an `agent/` folder, e.g. `experiments/`)."""
    roots: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UserError(f'{path}: no such experiment folder')
        path = path.resolve()
        children = sorted(p for p in path.iterdir() if (p / 'agent').is_dir()) if not (path / 'agent').is_dir() else []
        for root in children or [path]:
            if root not in roots:
                roots.append(root)
    return [RunFolder(str(i), root) for i, root in enumerate(roots)]
