"""Reads (and the few writes) the annotation app needs, owned by the store so ``web/`` has no SQL.

Part of :class:`~rlhf_gym.store.FeedbackStore`: the open queries of an annotator, their progress,
earlier answers to a query, the answers feed after a cursor, and a run's counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, and_, cast, func, or_, select, update

from rlhf_gym.store import audit
from rlhf_gym.store.access import AccessCache, QueryMeta, query_meta_of
from rlhf_gym.store.audit import retry_conflicts
from rlhf_gym.store.batch import read_query_metas
from rlhf_gym.store.jsonsafe import clean_json
from rlhf_gym.store.schema import ConsentRow, FeedbackRow, QueryRow, RunRow
from rlhf_gym.types import Query

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class StoredQuery:
    """A stored query with who it is assigned to (None: any annotator) and its run."""

    query: Query
    assigned_to: str | None
    run_id: str | None


def _stored(row: QueryRow, frames: Any = None) -> StoredQuery:
    q = Query.from_dict({"id": row.id, "kind": row.kind, "run_id": row.run_id, "created_at": row.created_at,
                         "payload": row.payload}, frames)
    return StoredQuery(q, row.assigned_to, row.run_id)


def _open_filter(aid: str) -> list[Any]:
    """Queries this annotator may still answer: theirs or nobody's, not answered by them, run not done."""
    answered = select(FeedbackRow.id).where(FeedbackRow.query_id == QueryRow.id,
                                            FeedbackRow.annotator_id == aid).exists()
    done_runs = select(RunRow.id).where(RunRow.status == "done")
    return [or_(QueryRow.assigned_to == aid, QueryRow.assigned_to.is_(None)), ~answered,
            or_(QueryRow.run_id.is_(None), QueryRow.run_id.not_in(done_runs))]


class AnnotationMixin:
    """Annotation-app reads; the host class provides ``session()``."""

    access: AccessCache

    def session(self) -> Session:  # pragma: no cover - provided by FeedbackStore
        raise NotImplementedError

    def query_meta(self, query_id: str, for_annotator: str | None = None, prefetch: int = 1000) -> QueryMeta | None:
        """Kind, owner, run, time and (step queries) step of a query, without decoding its payload.

        Kept in memory once read (queries never change); None for an unknown id (never cached).
        ``for_annotator``: on a miss for a query that person may answer, the metadata of up to ``prefetch`` of
        their other open queries is read in the same session, since their next labels are for those: a
        server process that did not receive the queries (another worker, a restart) reads them once per
        person, not once per label (someone else's query reads only itself).
        """
        meta = self.access.query(query_id)
        if meta is None:
            with self.session() as s:
                found = read_query_metas(s, {query_id})
                if (found and for_annotator is not None and prefetch > 0
                        and found[0].assigned_to in (None, for_annotator)):  # theirs to answer: the rest will follow
                    for m in read_query_metas(s, where=_open_filter(for_annotator), limit=prefetch):
                        self.access.put_query(m)
            if not found:
                return None
            meta = found[0]
            self.access.put_query(meta)
        return meta

    def stored_query(self, query_id: str) -> StoredQuery | None:
        with self.session() as s:
            row = s.get(QueryRow, query_id)
            return None if row is None else _stored(row, self.frames)

    def open_queries(self, annotator_id: str, kind: str, limit: int) -> list[StoredQuery]:
        """The oldest queries of ``kind`` this annotator may still answer."""
        with self.session() as s:
            q = (select(QueryRow).where(QueryRow.kind == kind, *_open_filter(annotator_id))
                 .order_by(QueryRow.created_at, QueryRow.id).limit(limit))
            out = [_stored(r, self.frames) for r in s.execute(q).scalars()]
        for sq in out:  # the labels that follow need not read these again
            self.access.put_query(query_meta_of(sq.query, sq.run_id, sq.assigned_to))
        return out

    def progress(self, annotator_id: str) -> dict[str, Any]:
        """Labels given (skips do not count; a demonstration and a chosen action do) and queries still open, by kind."""
        # an action answer has value null and the action in data; a skip's data is JSON null (or SQL NULL)
        chose = and_(QueryRow.kind == "action", func.coalesce(cast(FeedbackRow.data, String), "null") != "null")
        with self.session() as s:
            given = s.execute(select(func.count(FeedbackRow.id)).join(QueryRow, QueryRow.id == FeedbackRow.query_id)
                              .where(FeedbackRow.annotator_id == annotator_id, FeedbackRow.withdrawn.is_(False),
                                     or_(FeedbackRow.value.is_not(None), QueryRow.kind == "demo", chose))).scalar_one()
            open_by_kind = dict(s.execute(select(QueryRow.kind, func.count(QueryRow.id))
                                          .where(*_open_filter(annotator_id)).group_by(QueryRow.kind)).all())
        open_n = int(sum(open_by_kind.values()))
        return {"given": int(given), "open": open_n, "wanted": int(given) + open_n,
                "open_by_kind": {k: int(open_by_kind.get(k, 0)) for k in ("pair", "step", "demo", "outcome", "action")}}

    def earlier_answers(self, annotator_id: str, query_id: str, client_key: str | None = None) -> list[dict[str, Any]]:
        """This annotator's stored answers to this query or with this client key (id, query_id, client_key)."""
        cond = FeedbackRow.query_id == query_id
        if client_key is not None:
            cond = or_(FeedbackRow.client_key == client_key, cond)
        with self.session() as s:
            rows = s.execute(select(FeedbackRow.id, FeedbackRow.query_id, FeedbackRow.client_key)
                             .where(FeedbackRow.annotator_id == annotator_id, cond).order_by(FeedbackRow.id)).all()
        return [{"id": r.id, "query_id": r.query_id, "client_key": r.client_key} for r in rows]

    @retry_conflicts
    def set_run_env(self, run_id: str, env_id: str) -> None:
        """Record the environment of a run's queries, unless one is recorded already."""
        with self.session() as s, s.begin():
            run = s.get(RunRow, run_id)
            if run is not None and not (run.config or {}).get("env"):
                run.config = {**(run.config or {}), "env": env_id}

    def answers_since(self, run_id: str | None, since: int, limit: int) -> dict[str, Any]:
        """Non-withdrawn answers with id > ``since`` (oldest first), each with its run and consent version.

        Rows stored before inputs were checked are cleaned (see :func:`~rlhf_gym.store.jsonsafe.clean_json`)
        so one bad old row cannot stop the feed.
        """
        with self.session() as s:
            q = (select(FeedbackRow, QueryRow.run_id).join(QueryRow, QueryRow.id == FeedbackRow.query_id)
                 .where(FeedbackRow.id > since, FeedbackRow.withdrawn.is_(False)))
            if run_id is not None:
                q = q.where(QueryRow.run_id == run_id)
            rows = s.execute(q.order_by(FeedbackRow.id).limit(limit)).all()
            # the version each person last agreed to, for every annotator on the page in one query
            consent: dict[str, str | None] = {}
            aids = {r.annotator_id for r, _ in rows}
            if aids:
                for aid, version in s.execute(select(ConsentRow.annotator_id, ConsentRow.version).where(
                        ConsentRow.annotator_id.in_(aids), ConsentRow.agreed.is_(True)).order_by(ConsentRow.id)):
                    consent[aid] = version  # later rows overwrite: the latest agreement counts
        out = [clean_json({"id": r.id, "query_id": r.query_id, "annotator_id": r.annotator_id, "value": r.value,
                           "asked_at": r.asked_at, "answered_at": r.answered_at, "step": r.step, "data": r.data,
                           "run_id": rid, "consent_version": consent.get(r.annotator_id)}) for r, rid in rows]
        return {"answers": out, "cursor": out[-1]["id"] if out else since}

    def run_counts(self, run_id: str) -> dict[str, Any] | None:
        """A run's status, number of queries and of (non-withdrawn) answers; None for an unknown run."""
        with self.session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                return None
            nq = s.execute(select(func.count(QueryRow.id)).where(QueryRow.run_id == run_id)).scalar_one()
            na = s.execute(select(func.count(FeedbackRow.id)).join(QueryRow, QueryRow.id == FeedbackRow.query_id)
                           .where(QueryRow.run_id == run_id, FeedbackRow.withdrawn.is_(False))).scalar_one()
            return {"run_id": run_id, "status": run.status, "queries": int(nq), "answers": int(na)}

    @retry_conflicts
    def finish_run(self, run_id: str, actor: str = "admin") -> None:
        """Mark a run done (its queries are no longer offered); audited in the same transaction."""
        with self.session() as s, s.begin():
            s.execute(update(RunRow).where(RunRow.id == run_id).values(status="done"))
            audit.append(s, actor, "run.finish", {"run": run_id})
