"""The errors a user can cause, in one place at the bottom of the import graph.

Every package raises these (the pure-Python `agent` package too, so nothing here imports torch or
BasicSR), and `train.py` / `test.py` turn any `UserError` into one line on stderr before anything
is trained: the message names the option key, file or server that is wrong.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Something the user can fix: a wrong option, a missing file. Reported as one line."""


class OptionError(UserError, ValueError):
    """A wrong option in a YAML file; the message starts with the key (`agent.stage_iters: ...`)."""


class MissingWeightsError(UserError, RuntimeError):
    """A metric, loss or network needs a file that is not on disk and cannot be downloaded."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint named in the options is missing or does not fit the network."""


class WriteError(UserError, OSError):
    """A file of the run (checkpoint, decision log) could not be written (disk full, quota); what was
    written before is intact. The message names the file."""


def closest(key: str, known: Iterable[str]) -> str:
    """' (did you mean `stage_iters`?)', or '' when nothing is close."""
    match = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f' (did you mean `{match[0]}`?)' if match else ''


def unknown_key(prefix: str, key: str, known: Iterable[str]) -> OptionError:
    """The error for a key that a strict section does not have."""
    known = sorted(str(k) for k in known)
    where = f'{prefix}.{key}' if prefix else str(key)
    return OptionError(f'{where}: unknown option{closest(key, known)}; known options are {known}')


def check_keys(section: dict, known: Iterable[str], prefix: str) -> None:
    """Raise for the first key of `section` that is not in `known`."""
    known = list(known)
    for key in section:
        if key not in known:
            raise unknown_key(prefix, key, known)
