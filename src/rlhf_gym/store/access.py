"""Who may answer what, cached in memory and invalidated by a generation check on the audit log.

A label needs three facts: the annotator (kind, withdrawn or not), their consent to the current text,
and the query (its kind and who it is assigned to). Reading them for every label costs statements
and, for a query, decoding its whole payload. So each :class:`~rlhf_gym.store.FeedbackStore` keeps
them here, with the credentials (invite tokens, session secrets) the web app has looked up.

**When is the cache stale?** Every change that matters (consent given or declined, withdrawal, a
revoked or reissued invite, ended sessions, a new annotator) is audited in the same transaction as
the change, and nothing else but a label (``feedback.add``) is audited often. The *generation* is the
audit sequence number up to which the cache is known good; :func:`changed_since` asks the database,
in one statement, for the current head and whether any entry after the generation is something
other than a label (a primary-key range scan over the entries since the last check). If so, every
annotator and credential entry is dropped (``epoch`` moves on) and read again when next needed.

- The group-commit writer runs this check **under the database's write lock** for every batch, so a
  withdrawal, consent change or revocation committed by any process before the batch is seen: a
  label is never stored on stale facts, whichever process made the change.
- Reads (pages, open queries, clips) run the check for each request, coalesced: a check that
  started after a request arrived serves it, so a revocation committed before a request arrived is
  seen by that request, in any process, at the cost of one cheap statement per busy moment.

Queries are immutable once stored (their assignment is fixed when they are posted) and are never
deleted, so their metadata is kept without expiry (bounded in count); an unknown id is never cached.
Changes made with SQL outside the store are not audited and so not seen; :attr:`AccessCache.ttl`
bounds how long any entry is kept regardless.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select

from rlhf_gym.store.schema import AuditHeadRow, AuditRow

#: the one audit action that does not change who may do what
LABEL_ACTION = "feedback.add"


@dataclass(frozen=True)
class QueryMeta:
    """What a label needs from its query, without decoding the payload: kind, owner, time, step."""

    id: str
    kind: str
    run_id: str | None
    created_at: float
    assigned_to: str | None
    step: int | None = None
    episode: int | None = None


def query_meta_of(q: Any, run_id: str | None, assigned_to: str | None) -> QueryMeta:
    """The metadata of a query object as stored with ``run_id`` and ``assigned_to``."""
    step = getattr(q, "step", None) if q.kind == "step" else None
    episode = getattr(q, "episode", None) if q.kind == "step" else None
    return QueryMeta(q.id, q.kind, run_id, float(q.created_at), assigned_to,
                     None if step is None else int(step), None if episode is None else int(episode))


@dataclass(frozen=True)
class Standing:
    """An annotator as far as labels go: kind, withdrawn, and their latest consent decision for the
    store's consent version (True agreed, False declined, None never asked)."""

    id: str
    kind: str
    withdrawn: bool
    consented: bool | None


@dataclass(frozen=True)
class Holder:
    """The annotator behind a live credential, and when the credential stops working (None: never)."""

    id: str
    kind: str
    withdrawn: bool
    expires_at: float | None


def changed_since(conn: Any, since: int | None) -> tuple[int, str | None, bool]:
    """``(head seq, head hash, changed)``: the audit head and whether an entry after ``since`` is not a label.

    One statement, so head and answer come from one snapshot. ``since=None`` counts as changed.
    """
    later = exists().where(AuditRow.seq > (since if since is not None else -1), AuditRow.action != LABEL_ACTION)
    row = conn.execute(select(AuditHeadRow.seq, AuditHeadRow.hash, later).where(AuditHeadRow.id == 1)).first()
    if row is None:  # no audit entry yet (a fresh store): nothing to compare with
        return 0, None, True
    return int(row[0]), row[1], since is None or bool(row[2])


class AccessCache:
    """Annotator standings, credentials and query metadata of one store handle (thread-safe).

    ``epoch`` counts invalidations; an entry read from the database is kept only if no invalidation
    happened since the check that preceded the read (:meth:`put_standing`, :meth:`put_holder`).
    """

    def __init__(self, max_queries: int = 200_000, max_people: int = 100_000, ttl: float = 300.0) -> None:
        self.max_queries, self.max_people, self.ttl = max_queries, max_people, ttl
        self.generation: int | None = None
        self.epoch = 0
        self.checks = 0
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._checked_at = -1.0
        self._people: dict[str, tuple[float, Standing]] = {}
        self._holders: dict[tuple[str, str], tuple[float, Holder]] = {}
        self._queries: OrderedDict[str, QueryMeta] = OrderedDict()

    # -- the generation ---------------------------------------------------------------------------
    def observe(self, head: int, changed: bool, started: float | None = None) -> int:
        """Record a check's outcome (head seq, changed or not); returns the epoch entries read now belong to.

        ``started``: when the check began (``time.monotonic()``), so requests that arrived before it need
        no check of their own.
        """
        with self._lock:
            if started is not None:
                self._checked_at = max(self._checked_at, started)
            if changed:
                self._people.clear()
                self._holders.clear()
                self.epoch += 1
            self.generation = head if self.generation is None or changed else max(self.generation, head)
            return self.epoch

    def snapshot(self) -> tuple[int | None, int]:
        """``(generation, epoch)`` read together: the basis of decisions taken from memory."""
        with self._lock:
            return self.generation, self.epoch

    def advance(self, head: int, epoch: int) -> None:
        """After our own labels were committed (audit entries up to ``head``, all labels): move the generation."""
        with self._lock:
            if self.epoch == epoch and self.generation is not None:
                self.generation = max(self.generation, head)

    def refresh(self, conn_factory: Any, arrived: float) -> None:
        """Make sure a check that started after ``arrived`` (``time.monotonic()``) has run (coalesced)."""
        with self._check_lock:
            if self._checked_at >= arrived:
                return
            started = time.monotonic()
            with conn_factory() as conn:
                head, _hash, changed = changed_since(conn, self.generation)
            self.observe(head, changed, started)
            self.checks += 1

    def clear(self) -> None:
        """Drop every annotator and credential entry (after a change made through this handle)."""
        with self._lock:
            self._people.clear()
            self._holders.clear()
            self.epoch += 1

    # -- entries ----------------------------------------------------------------------------------
    def standing(self, annotator_id: str) -> Standing | None:
        with self._lock:
            hit = self._people.get(annotator_id)
        return hit[1] if hit is not None and time.monotonic() - hit[0] < self.ttl else None

    def put_standing(self, st: Standing, epoch: int) -> None:
        with self._lock:
            if epoch != self.epoch:
                return
            if len(self._people) >= self.max_people:
                self._people.clear()
            self._people[st.id] = (time.monotonic(), st)

    def holder(self, kind: str, secret_hash: str, now: float) -> Holder | None:
        with self._lock:
            hit = self._holders.get((kind, secret_hash))
        if hit is None or time.monotonic() - hit[0] >= self.ttl:
            return None
        h = hit[1]
        return None if h.expires_at is not None and h.expires_at <= now else h

    def put_holder(self, kind: str, secret_hash: str, h: Holder, epoch: int) -> None:
        with self._lock:
            if epoch != self.epoch:
                return
            if len(self._holders) >= self.max_people:
                self._holders.clear()
            self._holders[(kind, secret_hash)] = (time.monotonic(), h)

    def forget(self, annotator_id: str) -> None:
        """Drop this person's entries (after their own change through this handle: seen at once here)."""
        with self._lock:
            self._people.pop(annotator_id, None)
            for k in [k for k, (_t, h) in self._holders.items() if h.id == annotator_id]:
                del self._holders[k]
            self.epoch += 1  # an entry read before the change and put after it must not stay

    def query(self, query_id: str) -> QueryMeta | None:
        with self._lock:
            return self._queries.get(query_id)

    def put_query(self, meta: QueryMeta) -> None:
        with self._lock:
            self._queries[meta.id] = meta
            while len(self._queries) > self.max_queries:
                self._queries.popitem(last=False)
