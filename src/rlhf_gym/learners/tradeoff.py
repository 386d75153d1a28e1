"""Learning a person's trade-off weights by asking which of two outcomes they prefer (active or random).

:func:`learn_weights` is the question loop: pick the next pair of outcomes from the posterior
(:func:`rlhf_gym.morl.weights.select_pair`), post it to the feedback source, update the posterior with
the answer. Answers are read back through the store when one is given, incrementally (only those after
the last one read, :class:`OutcomeAnswers`), so a person who withdraws mid-run is out of the posterior
from the next question on (the store withdraws per annotator; the posterior is rebuilt from the store's
non-withdrawn answers when someone whose answers it used has withdrawn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_gym.feedback.sources import FeedbackSource, StopFeedback
from rlhf_gym.morl.weights import WeightPosterior, select_pair
from rlhf_gym.types import Feedback, OutcomeQuery

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore


@dataclass
class WeightLearningResult:
    """What the question loop leaves: the posterior, the answers it used, and how many were asked."""

    posterior: WeightPosterior
    answers: list[tuple[OutcomeQuery, Feedback]] = field(default_factory=list)
    asked: int = 0
    stopped: bool = False
    rebuilt: int = 0
    """Times the posterior was rebuilt from the store because answers were withdrawn."""


def answered_outcomes(store: FeedbackStore, run_id: str) -> list[tuple[OutcomeQuery, Feedback]]:
    """The run's outcome queries with their non-withdrawn, non-skipped answers (the store's read)."""
    out = []
    cache: dict[str, OutcomeQuery] = {}
    for fb in store.feedback(run_id=run_id, kind="outcome", include_skipped=False):
        if fb.query_id not in cache:
            q = store.query(fb.query_id)
            assert isinstance(q, OutcomeQuery)
            cache[fb.query_id] = q
        out.append((cache[fb.query_id], fb))
    return out


class OutcomeAnswers:
    """A run's outcome answers read from the store incrementally: each :meth:`read` fetches only the
    answers stored after the last one read (``answers_since``), so a loop of n questions reads each
    answer once rather than every answer n times.

    The store withdraws whole annotators; :meth:`withdrawn` says whether anyone whose answers are held
    has withdrawn since (one look per annotator), and :meth:`drop_withdrawn` removes their answers.
    """

    PAGE = 500

    def __init__(self, store: FeedbackStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.cursor = 0
        self.answers: list[tuple[OutcomeQuery, Feedback]] = []
        self._queries: dict[str, OutcomeQuery | None] = {}

    def _query(self, qid: str) -> OutcomeQuery | None:
        if qid not in self._queries:
            q = self.store.query(qid)
            self._queries[qid] = q if isinstance(q, OutcomeQuery) else None
        return self._queries[qid]

    def read(self) -> list[tuple[OutcomeQuery, Feedback]]:
        """Non-skipped outcome answers stored since the last read (also appended to :attr:`answers`)."""
        new: list[tuple[OutcomeQuery, Feedback]] = []
        while True:
            page = self.store.answers_since(self.run_id, self.cursor, self.PAGE)
            for a in page["answers"]:
                q = self._query(a["query_id"])
                fb = Feedback.from_dict(a)
                if q is not None and not fb.skipped:
                    new.append((q, fb))
            self.cursor = int(page["cursor"])
            if len(page["answers"]) < self.PAGE:
                break
        self.answers += new
        return new

    def withdrawn(self) -> set[str]:
        """Annotators whose held answers are no longer theirs to give (withdrawn since they were read)."""
        out = set()
        for aid in {fb.annotator_id for _, fb in self.answers}:
            row = self.store.annotator(aid)
            if row is None or row.withdrawn_at is not None:
                out.add(aid)
        return out

    def drop_withdrawn(self, who: set[str]) -> None:
        self.answers = [(q, fb) for q, fb in self.answers if fb.annotator_id not in who]


def posterior_from(answers: Sequence[tuple[OutcomeQuery, Feedback]], make: Callable[[], WeightPosterior]) -> WeightPosterior:
    """A fresh posterior (``make()``) updated with ``answers`` in order."""
    post = make()
    for q, fb in answers:
        post.update(q.left, q.right, fb.value)
    return post


def learn_weights(source: FeedbackSource, outcomes: np.ndarray, make_posterior: Callable[[], WeightPosterior],
                  budget: int, selection: str = "info", rng: np.random.Generator | None = None,
                  objectives: Sequence[str] = (), run_id: str | None = None, store: FeedbackStore | None = None,
                  meta: Callable[[int], dict[str, Any]] | None = None, timeout: float | None = None,
                  clip: Callable[[int], str | None] | None = None,
                  on_answer: Callable[[int, WeightLearningResult], None] | None = None) -> WeightLearningResult:
    """Ask up to ``budget`` questions about pairs of ``outcomes`` (rows: per-objective returns).

    Args:
        source: who answers (simulated teacher, terminal, population).
        outcomes: the candidate outcomes, (n, k).
        make_posterior: builds the prior (called again when the posterior is rebuilt after a withdrawal).
        budget: questions to ask (skipped ones count: a person's time was spent).
        selection: ``info`` (expected information gain), ``volume`` (volume removal) or ``random``.
        rng: the question-selection stream.
        objectives: names shown with each outcome.
        run_id, store: where answers are read back from (withdrawal honoured); without a store the
            answers as returned are used.
        meta: outcome index -> provenance stored with the query (policy, seed).
        clip: outcome index -> path of a clip of it (shown to a person), or None.
        timeout: seconds to wait for each answer (None: until it comes or the source stops).
        on_answer: called after each question with its number and the running result (logging).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    outcomes = np.asarray(outcomes, float)
    res = WeightLearningResult(make_posterior())
    reader = OutcomeAnswers(store, run_id) if store is not None and run_id is not None else None
    asked: set[tuple[int, int]] = set()
    for t in range(1, int(budget) + 1):
        i, j = select_pair(res.posterior, outcomes, selection, rng, exclude=asked)
        asked.add((min(i, j), max(i, j)))
        q = OutcomeQuery.make(outcomes[i], outcomes[j], objectives, run_id=run_id,
                              left_clip=clip(i) if clip else None, right_clip=clip(j) if clip else None,
                              meta={"left": meta(i), "right": meta(j)} if meta else {"left": i, "right": j})
        try:
            got = source.ask([q], timeout=timeout)
        except StopFeedback:
            res.stopped = True
            break
        res.asked = t
        if reader is not None:
            new = reader.read()  # this answer, and any late answers to earlier questions
            gone = reader.withdrawn()
            if gone:  # someone withdrew: start again from the answers still held
                reader.drop_withdrawn(gone)
                res.posterior = posterior_from(reader.answers, make_posterior)
                res.rebuilt += 1
            else:
                for q_new, fb in new:
                    res.posterior.update(q_new.left, q_new.right, fb.value)
            res.answers = list(reader.answers)
        else:
            for fb in got:
                res.posterior.update(q.left, q.right, fb.value)
                if not fb.skipped:
                    res.answers.append((q, fb))
        if on_answer is not None:
            on_answer(t, res)
        if source.stopped:
            res.stopped = True
            break
    return res
