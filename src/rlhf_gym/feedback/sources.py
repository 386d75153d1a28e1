"""The one interface between a learner and whoever answers its questions.

A person at a terminal, a person in a browser and a simulated teacher all implement
:class:`FeedbackSource`. Asking is separated from answering: ``post`` hands over queries and returns
at once; ``poll`` returns whatever answers have arrived since the last poll. A simulated teacher
answers during ``post``; a person may take seconds or minutes, and the training loop keeps going with
what it has.

When a :class:`~rlhf_gym.store.FeedbackStore` is given, every answer is committed to it before
``poll`` returns it, so a learner never uses an answer that a crash could lose.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rlhf_gym.types import Feedback, Query

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore


def echo(text: str, limit: int = 40) -> str:
    """A person's input quoted back to them, cut to ``limit`` characters (a pasted page must not flood the screen)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


class StopFeedback(Exception):
    """Raised by a source when the person asked to stop (``q``, Ctrl-C); answers so far are kept."""


class FeedbackSource(ABC):
    """Takes queries, hands back answers as they arrive.

    Subclasses implement :meth:`_submit` (take queries) and :meth:`_collect` (answers ready now).
    The base class stores every answer before returning it and tracks what is still pending.
    """

    #: True for sources that answer from the true reward or an expert (used only to label results).
    simulated: bool = True

    def __init__(self, annotator_id: str, store: FeedbackStore | None = None, run_id: str | None = None) -> None:
        self.annotator_id = annotator_id
        self.store = store
        self.run_id = run_id
        self._pending: dict[str, Query] = {}
        self._asked_at: dict[str, float] = {}
        self.stopped = False

    # -- public verbs -------------------------------------------------------------------------
    def post(self, queries: Sequence[Query]) -> None:
        """Hand over queries; returns without waiting for answers."""
        if self.stopped:
            raise StopFeedback("this feedback source was stopped")
        now = time.time()
        if self.store is not None:
            self.store.add_queries(queries, run_id=self.run_id, assigned_to=self.annotator_id)
        for q in queries:
            self._pending[q.id] = q
            self._asked_at[q.id] = now
        self._submit(list(queries))

    def poll(self, step: int | None = None) -> list[Feedback]:
        """Answers that arrived since the last poll, each already committed to the store.

        ``step`` is the caller's environment step counter, stamped on answers that carry none, and
        used by sources whose answers arrive a number of steps late.
        """
        out = []
        for fb in self._collect(step):
            if fb.step is None and step is not None:
                fb = Feedback(fb.query_id, fb.annotator_id, fb.value, fb.asked_at, fb.answered_at, step, fb.data)
            if self.store is not None:
                fb = self.store.add_feedback(fb)
            self._pending.pop(fb.query_id, None)
            out.append(fb)
        return out

    def ask(self, queries: Sequence[Query], step: int | None = None, timeout: float | None = None) -> list[Feedback]:
        """Convenience for synchronous callers: post, then poll until all are answered or timeout."""
        self.post(queries)
        ids = {q.id for q in queries}
        got: list[Feedback] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            got += self.poll(step)
            if not ids & self._pending.keys() or self.stopped:
                return got
            if deadline is not None and time.monotonic() >= deadline:
                return got
            time.sleep(0.05)

    @property
    def pending(self) -> int:
        """Number of posted queries not answered yet."""
        return len(self._pending)

    def cancel(self, query_ids: Sequence[str]) -> None:
        """Stop waiting for these queries (a learner that no longer needs them)."""
        for qid in query_ids:
            self._pending.pop(qid, None)

    def close(self) -> None:
        """Release resources (terminal, HTTP session). Pending queries stay in the store."""
        self._pending.clear()

    # -- for subclasses -------------------------------------------------------------------------
    @abstractmethod
    def _submit(self, queries: list[Query]) -> None: ...

    @abstractmethod
    def _collect(self, step: int | None) -> list[Feedback]: ...

    def _record(self, query: Query, value: float | None, step: int | None = None,
                data: dict | None = None) -> Feedback:
        """Build a feedback record for ``query`` stamped with this source's annotator and times."""
        asked = self._asked_at.get(query.id, time.time())
        return Feedback(query.id, self.annotator_id, value, asked, max(time.time(), asked), step, data)

    def __enter__(self) -> FeedbackSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
