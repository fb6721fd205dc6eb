"""Run one job per validation image at once, and stop waiting when the boundary's budget ends.

vLLM batches concurrent requests, so 10 prompts sent together cost about one answer's
latency. Workers are daemon threads: a straggler still waiting on the network when the
budget ends is abandoned (its result ignored) and cannot keep the process alive at exit;
the clients also get the deadline so stragglers stop retrying soon after.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from collections.abc import Callable


def run_concurrently(
    job: Callable[[int, float], Any], count: int, max_workers: int, budget_s: float | None
) -> tuple[list[Any], list[bool]]:
    """Call `job(i, deadline)` for i in range(count); return (results, done flags).

    A job that raised has its exception as result; a job not done by the deadline has
    result None and done False.
    """
    deadline = time.monotonic() + budget_s if budget_s is not None else float('inf')
    results: list[Any] = [None] * count
    done = [False] * count
    pending = list(range(count))
    cond = threading.Condition()

    def worker() -> None:
        while True:
            with cond:
                if not pending or time.monotonic() >= deadline:
                    return
                i = pending.pop(0)
            try:
                value = job(i, deadline)
            except BaseException as e:  # noqa: BLE001 -- reported to the caller, never lost
                value = e
            with cond:
                results[i], done[i] = value, True
                cond.notify_all()

    for _ in range(max(1, min(max_workers, count))):
        threading.Thread(target=worker, daemon=True, name='lossagent-ask').start()
    with cond:
        while not all(done):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            cond.wait(min(left, 1.0))
        # copy under the lock: an abandoned straggler may still write later
        return list(results), list(done)
