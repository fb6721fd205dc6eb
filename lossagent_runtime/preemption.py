"""Stopping on a cluster's signal without losing the iterations since the last checkpoint.

SLURM, Kubernetes and spot instances send SIGTERM (SLURM also SIGUSR1 a set time ahead with
`--signal=USR1@90`) and kill the job shortly after. `logger.preempt_signals` (default
[SIGTERM, SIGUSR1]; [] keeps Python's default behaviour) names the signals that instead ask the
run to stop: the handler only notes the signal, the loop finishes the iteration it is in, writes a
training state at that iteration (the same files as a periodic checkpoint) and exits with status
75 (EX_TEMPFAIL: "try again"), so a job script can requeue it and `--auto_resume` continues from
there. Further signals during the save are noted and ignored, so they cannot interrupt it.

With several processes the stop flag is all-reduced (MAX) every iteration: every rank stops after
the same iteration, however many of them received the signal, and no rank is left waiting in a
collective. The flag is a CPU int (in a gloo group beside NCCL): microseconds, no GPU sync.
"""

from __future__ import annotations

import signal

import torch
import torch.distributed as dist

from lossagent_errors import OptionError

EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL
DEFAULT_SIGNALS = ('SIGTERM', 'SIGUSR1')


class Preempted(Exception):
    """The run stopped on a signal after saving its state; the message is the one line for the user."""


def preempt_signals(opt: dict) -> list[signal.Signals]:
    """`logger.preempt_signals`: a list of signal names (SIGTERM, USR1, ...); OptionError otherwise."""
    names = (opt.get('logger') or {}).get('preempt_signals', list(DEFAULT_SIGNALS))
    if names is None:
        names = []
    if not isinstance(names, (list, tuple)):
        raise OptionError(
            f'logger.preempt_signals: expected a list of signal names such as {list(DEFAULT_SIGNALS)}, got {names!r}'
        )
    out = []
    for name in names:
        key = str(name).upper()
        key = key if key.startswith('SIG') else f'SIG{key}'
        if key in ('SIGKILL', 'SIGSTOP') or not hasattr(signal.Signals, key):
            raise OptionError(
                f'logger.preempt_signals: {name!r} is not a signal that can be caught; '
                f'expected names such as {list(DEFAULT_SIGNALS)}'
            )
        out.append(signal.Signals[key])
    return out


class StopRequest:
    """Notes the preemption signals while installed; `requested()` is the (all-reduced) answer."""

    def __init__(self, signals: list[signal.Signals]):
        self.signals = list(signals)
        self.received: list[int] = []
        self._previous: dict = {}
        self._flag = self._group = None

    def install(self) -> StopRequest:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._note)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # a CPU flag in a gloo group beside NCCL: no GPU synchronisation per iteration
            self._group = dist.new_group(backend='gloo') if dist.get_backend() == 'nccl' else None
            self._flag = torch.zeros(1, dtype=torch.int32)
        return self

    def _note(self, signum, frame) -> None:  # a signal handler: nothing but a note
        self.received.append(signum)

    def requested(self) -> bool:
        """Whether any rank received a stop signal; a collective with several ranks (call it on all)."""
        if self._flag is None:
            return bool(self.received)
        self._flag.fill_(1 if self.received else 0)
        dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, group=self._group)
        return bool(self._flag.item())

    def signal_name(self) -> str:
        return signal.Signals(self.received[0]).name if self.received else 'a signal on another rank'

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}
