"""Group commit of answers: many labels, one transaction, set-based checks and plain Core inserts.

Part of :class:`~rlhf_gym.store.FeedbackStore`. The web app's writer drains the labels queued while
the previous batch was being written and stores them with :meth:`BatchMixin.add_feedback_many`:
the checks (annotator known and not withdrawn, consent, assignment, idempotency key, one answer per
person and query) are a handful of queries for the whole batch, made after the write lock is taken
(so a withdrawal committed by another process is seen), the rows go in with one insert, and the
audit chain is continued in memory from the signed head and written with one insert as well.
Each item gets its own outcome: a stored :class:`~rlhf_gym.types.Feedback` or the
:class:`~rlhf_gym.store.StoreError` that refused it; one bad item never fails the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, text

from rlhf_gym.store import audit
from rlhf_gym.store.audit import retry_conflicts
from rlhf_gym.store.schema import AnnotatorRow, ConsentRow, FeedbackRow, QueryRow
from rlhf_gym.types import Feedback

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class BatchMixin:
    """``add_feedback_many``; the host class provides ``session()``, ``consent_version`` and the errors."""

    consent_version: str | None

    def session(self) -> Session:  # pragma: no cover - provided by FeedbackStore
        raise NotImplementedError

    @retry_conflicts
    def add_feedback_many(self, items: Sequence[tuple[Feedback, str | None]]) -> list[Feedback | Exception]:
        """Store many answers in one transaction; returns, per item, the stored answer or why it was refused.

        Same rules as :meth:`~rlhf_gym.store.FeedbackStore.add_feedback`, except that a repeated client
        key (already stored, or earlier in the batch) is refused with :class:`~rlhf_gym.store.KeyUsed`
        naming the answer stored with it.
        """
        from rlhf_gym.store.errors import AlreadyAnswered, ConsentError, KeyUsed, StoreError, UnsafeInputError
        from rlhf_gym.store.store import _check

        out: list[Feedback | Exception | None] = [None] * len(items)
        todo: list[int] = []
        for i, (fb, key) in enumerate(items):
            try:
                _check({"query_id": fb.query_id, "annotator_id": fb.annotator_id, "value": fb.value, "step": fb.step,
                        "asked_at": fb.asked_at, "answered_at": fb.answered_at, "client_key": key}, "feedback")
                _check(fb.data, "data")
                todo.append(i)
            except UnsafeInputError as e:
                out[i] = e
        if not todo:
            return out  # type: ignore[return-value]
        with self.session() as s, s.begin():
            _write_lock(s)
            aids = {items[i][0].annotator_id for i in todo}
            qids = {items[i][0].query_id for i in todo}
            keys = {items[i][1] for i in todo if items[i][1] is not None}
            anns = {r.id: r for r in s.execute(select(AnnotatorRow.id, AnnotatorRow.kind, AnnotatorRow.withdrawn_at)
                                               .where(AnnotatorRow.id.in_(aids)))}
            queries = {r.id: r.assigned_to for r in s.execute(select(QueryRow.id, QueryRow.assigned_to)
                                                              .where(QueryRow.id.in_(qids)))}
            agreed = self._consents_of(s, {a for a, r in anns.items() if r.kind == "human"})
            cols = (FeedbackRow.id, FeedbackRow.query_id, FeedbackRow.annotator_id, FeedbackRow.value,
                    FeedbackRow.asked_at, FeedbackRow.answered_at, FeedbackRow.step, FeedbackRow.data,
                    FeedbackRow.client_key)
            by_key: dict[tuple[str, str], Feedback] = {}
            answered: set[tuple[str, str]] = set()
            if keys:
                for r in s.execute(select(*cols).where(FeedbackRow.annotator_id.in_(aids),
                                                       FeedbackRow.client_key.in_(keys))):
                    by_key[(r.annotator_id, r.client_key)] = _fb(r)
            for r in s.execute(select(FeedbackRow.query_id, FeedbackRow.annotator_id).where(
                    FeedbackRow.query_id.in_(qids), FeedbackRow.annotator_id.in_(aids),
                    FeedbackRow.client_key.is_not(None))):
                answered.add((r.query_id, r.annotator_id))
            new_rows: list[dict] = []
            new_idx: list[int] = []
            same_key_later: dict[int, int] = {}  # item -> the item of this batch first stored with its key
            pending_keys: dict[tuple[str, str], int] = {}
            for i in todo:
                fb, key = items[i]
                ann = anns.get(fb.annotator_id)
                if ann is None:
                    out[i] = StoreError(f"unknown annotator {fb.annotator_id!r}")
                    continue
                if ann.withdrawn_at is not None:
                    out[i] = StoreError(f"annotator {fb.annotator_id!r} has withdrawn; no feedback is accepted")
                    continue
                if key is not None:
                    prev = by_key.get((fb.annotator_id, key))
                    if prev is not None:
                        out[i] = KeyUsed(key, prev) if prev.query_id == fb.query_id else StoreError(
                            f"client key {key!r} was already used for another query")
                        continue
                    if (fb.annotator_id, key) in pending_keys:
                        same_key_later[i] = pending_keys[(fb.annotator_id, key)]
                        continue
                if fb.query_id not in queries:
                    out[i] = StoreError(f"unknown query id {fb.query_id!r}")
                    continue
                owner = queries[fb.query_id]
                if owner is not None and owner != fb.annotator_id:
                    out[i] = StoreError(f"query {fb.query_id!r} is not assigned to annotator {fb.annotator_id!r}")
                    continue
                if ann.kind == "human" and not agreed.get(fb.annotator_id, False):
                    which = f"consent version {self.consent_version!r}" if self.consent_version else "any consent text"
                    out[i] = ConsentError(f"annotator {fb.annotator_id!r} has not agreed to {which}; no label is "
                                          "accepted without a recorded consent")
                    continue
                if key is not None:
                    if (fb.query_id, fb.annotator_id) in answered:
                        out[i] = AlreadyAnswered(fb.query_id, fb.annotator_id)
                        continue
                    answered.add((fb.query_id, fb.annotator_id))
                    pending_keys[(fb.annotator_id, key)] = i
                new_idx.append(i)
                new_rows.append({"query_id": fb.query_id, "annotator_id": fb.annotator_id, "value": fb.value,
                                 "data": fb.data, "asked_at": fb.asked_at, "answered_at": fb.answered_at,
                                 "step": fb.step, "client_key": key, "withdrawn": False})
            if new_rows:
                ids = list(s.execute(insert(FeedbackRow).returning(FeedbackRow.id, sort_by_parameter_order=True),
                                     new_rows).scalars())
                entries = []
                for i, fid in zip(new_idx, ids, strict=True):
                    fb = items[i][0]
                    out[i] = Feedback(fb.query_id, fb.annotator_id, fb.value, fb.asked_at, fb.answered_at, fb.step,
                                      fb.data, fid)
                    entries.append((fb.annotator_id, "feedback.add",
                                    {"feedback": fid, "query": fb.query_id, "value": fb.value}))
                audit.append_many(s, entries)
            for i, first in same_key_later.items():
                done = out[first]
                out[i] = KeyUsed(items[i][1] or "", done) if isinstance(done, Feedback) else done
        return out  # type: ignore[return-value]

    def _consents_of(self, s: Session, people: set[str]) -> dict[str, bool]:
        """Whether each person's latest consent decision (for the current version) is an agreement."""
        if not people:
            return {}
        q = select(ConsentRow.annotator_id, ConsentRow.agreed).where(ConsentRow.annotator_id.in_(people))
        if self.consent_version is not None:
            q = q.where(ConsentRow.version == self.consent_version)
        latest: dict[str, bool] = {}
        for r in s.execute(q.order_by(ConsentRow.at, ConsentRow.id)):
            latest[r.annotator_id] = bool(r.agreed)  # later rows overwrite: the last decision counts
        return latest


def _write_lock(s: Session) -> None:
    """Take the database's write lock before the checks, so they see every committed change."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    else:
        s.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))


def _fb(r: object) -> Feedback:
    return Feedback(r.query_id, r.annotator_id, r.value, r.asked_at, r.answered_at, r.step, r.data, r.id)  # type: ignore[attr-defined]
