"""How a decision is obtained (rank 0): the policy is asked in a worker thread, bounded by
`agent.boundary_budget_s`, and its proposal is put to a person first with `agent.human_approval`.

The stage hook decides when to ask and when to wait (`result(wait=True)` at a synchronous boundary,
`wait=False` at the asynchronous checks); this class owns the thread, the budget and the review. A
policy that raises or overruns the budget yields a fallback decision (the previous weights are kept
and the record says why): nothing here stops training.
"""

from __future__ import annotations

import concurrent.futures as futures
import time
import traceback
from pathlib import Path

from agent import Decision, History

from .human_approval import review_decision


class DecisionRunner:
    def __init__(self, policy, options, agent_dir: Path):
        self.policy = policy
        self.options = options
        self.agent_dir = agent_dir
        self.budget_s = options.boundary_budget_s
        self.executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='loss-agent')
        self._future = None
        self._submitted_at = 0.0

    @property
    def pending(self) -> bool:
        """A question was asked and its answer not yet taken."""
        return self._future is not None

    def submit(self, history: History) -> None:
        history = History(list(history.records))  # the main thread appends while we think
        self._submitted_at = time.perf_counter()
        self._future = self.executor.submit(self._decide, history)

    def _decide(self, history: History) -> tuple[Decision, str | None]:
        """(the decision, the traceback when the policy raised). Runs in the worker thread."""
        started = time.perf_counter()
        try:
            decision = self.policy.decide(history)
        except Exception as err:  # a policy bug must not cost the run
            return Decision(
                weights={},
                policy=self.policy.name,
                fallback=f'policy raised {err!r}',
                latency_s=round(time.perf_counter() - started, 4),
            ), traceback.format_exc(limit=5)
        decision.latency_s = round(decision.latency_s or time.perf_counter() - started, 4)
        decision = review_decision(decision, history.last, self.options, self.agent_dir)
        return decision, None

    def result(self, wait: bool) -> tuple[Decision, str | None] | None:
        """(the decision, a traceback or None); None while (asynchronously) still thinking. A returned
        answer is taken: `pending` is False afterwards."""
        if not wait and not self._future.done():
            return None
        remaining = self.budget_s - (time.perf_counter() - self._submitted_at)
        try:
            answer = self._future.result(timeout=max(0.0, remaining))
        except futures.TimeoutError:
            # The worker cannot be interrupted; a fresh one serves the next boundaries.
            self.executor.shutdown(wait=False)
            self.executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='loss-agent')
            answer = (
                Decision(
                    weights={},
                    policy=self.policy.name,
                    fallback=f'no decision within agent.boundary_budget_s={self.budget_s:g}s',
                    latency_s=round(self.budget_s, 4),
                ),
                None,
            )
        self._future = None
        return answer

    def close(self, cancel: bool = False) -> None:
        """Release the worker; `cancel` drops a question not yet started (a preempted run asks it again on resume)."""
        self.executor.shutdown(wait=False, cancel_futures=cancel)
