"""Checkpoint files that are either whole and verified or absent: written atomically, checked twice.

A checkpoint of iteration k is BasicSR's set of files, `models/net_g_k.pth` (and `net_d_k.pth`) and
`training_states/k.state`, plus our manifest `training_states/k.state.json`, written last:

    each file     written to `<file>.tmp` through a SHA-256 hasher, fsync'd, read back and compared
                  (checked when written), then renamed over `<file>` (a kill leaves the old file or
                  the new one, never half of one)
    the manifest  the size and SHA-256 of every file of the set; it exists only once all of them do

`check_checkpoint` is the check on loading: with a manifest every file must have its size and hash;
a set written before manifests existed (or whose manifest write failed after the payload) is
accepted when each file is a complete zip archive (PyTorch's format; its CRCs are checked) -- a
truncated file has no central directory.

A write that fails (disk full, quota, EFBIG) removes its own temporary file and the files it already
wrote for that iteration, and raises `WriteError` naming the file: earlier checkpoints and the
decision log are never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile

import torch

from lossagent_errors import WriteError

MANIFEST_SUFFIX = '.json'
CHUNK = 1 << 20


class _HashingWriter:
    """A file object for torch.save that hashes what it writes."""

    def __init__(self, f):
        self.f, self.hasher, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        view = memoryview(data).cast('B')
        self.hasher.update(view)
        self.size += len(view)
        return self.f.write(view)

    def flush(self) -> None:
        self.f.flush()


def file_digest(path: str) -> tuple[int, str]:
    hasher, size = hashlib.sha256(), 0
    with open(path, 'rb') as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(path) or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_verified(obj, path: str) -> dict:
    """torch.save `obj` to `path` atomically, verified by reading it back; returns {size, sha256}.
    Raises WriteError (the temporary file removed, `path` untouched) when anything fails."""
    tmp = path + '.tmp'
    try:
        with open(tmp, 'wb') as f:
            writer = _HashingWriter(f)
            torch.save(obj, writer)
            f.flush()
            os.fsync(f.fileno())
        entry = {'size': writer.size, 'sha256': writer.hasher.hexdigest()}
        if file_digest(tmp) != (entry['size'], entry['sha256']):
            raise OSError('the file read back differs from what was written')
        os.replace(tmp, path)
        _fsync_dir(path)
        return entry
    except Exception as err:  # torch reports a full disk as RuntimeError, not OSError
        _remove(tmp)
        raise WriteError(f'could not write {path}: {_reason(err)}') from None


def write_manifest(state_path: str, files: dict[str, dict], iteration: int) -> None:
    """The last file of a checkpoint: {file name relative to the experiment: size, sha256}."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(state_path)))
    entries = {os.path.relpath(os.path.abspath(p), root): e for p, e in files.items()}
    text = json.dumps({'iter': iteration, 'files': entries}, indent=1, sort_keys=True)
    path, tmp = state_path + MANIFEST_SUFFIX, state_path + MANIFEST_SUFFIX + '.tmp'
    try:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path)
    except OSError as err:
        _remove(tmp)
        raise WriteError(f'could not write {path}: {_reason(err)}') from None


def remove_checkpoint(paths) -> None:
    """Best effort: the files of a checkpoint that could not be completed."""
    for path in paths:
        _remove(path)
        _remove(path + '.tmp')


def check_checkpoint(state_path: str, model_paths: list[str]) -> str | None:
    """None when the checkpoint of `state_path` is whole, else what is wrong with which file.
    `model_paths`: BasicSR's network files of that iteration (used when there is no manifest)."""
    manifest_path = state_path + MANIFEST_SUFFIX
    if os.path.isfile(manifest_path):
        try:
            with open(manifest_path, encoding='utf-8') as f:
                files = json.load(f)['files']
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f'{manifest_path}: unreadable manifest ({_reason(err)})'
        root = os.path.dirname(os.path.dirname(os.path.abspath(state_path)))
        for name, entry in files.items():
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                return f'{path}: missing'
            size, digest = file_digest(path)
            if size != entry.get('size'):
                return f'{path}: {size} bytes, the manifest says {entry.get("size")} bytes (incomplete)'
            if digest != entry.get('sha256'):
                return f'{path}: SHA-256 differs from the manifest (damaged)'
        return None
    for path in [state_path, *model_paths]:
        problem = _zip_problem(path)
        if problem:
            return f'{path}: {problem}'
    return None


def _zip_problem(path: str) -> str | None:
    if not os.path.isfile(path):
        return 'missing'
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        return f'not a complete checkpoint ({_reason(err)})'
    return f'damaged member {bad}' if bad else None


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
