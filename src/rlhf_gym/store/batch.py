"""Storing answers: the one place where the rules for a label are checked, for one label or a batch.

Part of :class:`~rlhf_gym.store.FeedbackStore`. :meth:`BatchMixin.add_feedback_many` stores many
answers in one transaction (the web app's writer drains the labels queued while the previous batch
was written and hands them over at once); :meth:`~rlhf_gym.store.FeedbackStore.add_feedback` is the
same call with one item. Under the database's write lock (so every change committed by any process
is seen) it runs one generation check (:mod:`rlhf_gym.store.access`): while nothing but labels was
audited since the last batch, the annotators' standing (kind, withdrawn, consent) and the queries'
owners come from memory; otherwise they are read again, with a handful of set-based statements for
the whole batch. Earlier answers (client keys, one answer per person and query) are one statement,
the rows go in with one Core insert, and the audit chain is continued from the head read by the
generation check and written with one insert. On PostgreSQL the decisions are made before the lock
instead (people and queries not in memory read first, after the generation was taken) and the lock is
held for three statements (:meth:`BatchMixin._add_fast`); they stand only if the generation check, run
under the lock in the same statement as the insert, finds nothing but labels since, else the batch is
redone this way.
Each item gets its own outcome: a stored
:class:`~rlhf_gym.types.Feedback` or the :class:`~rlhf_gym.store.StoreError` that refused it; one bad
item never fails the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, literal, null, or_, select, text, union_all

from rlhf_gym.store import audit
from rlhf_gym.store.access import LABEL_ACTION, AccessCache, QueryMeta, Standing, changed_since
from rlhf_gym.store.audit import retry_conflicts
from rlhf_gym.store.errors import (
    AlreadyAnswered,
    ConsentError,
    CredentialEnded,
    KeyConflict,
    KeyUsed,
    NotAssigned,
    StoreError,
    UnknownAnnotator,
    UnknownQuery,
    UnsafeInputError,
    Withdrawn,
)
from rlhf_gym.store.jsonsafe import UnsafeValue, check_json
from rlhf_gym.store.schema import AnnotatorRow, ConsentRow, FeedbackRow, QueryRow, SessionRow
from rlhf_gym.types import Feedback

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Credential:
    """How a label's sender was signed in: ``kind`` "token" (invite) or "session", the secret's hash,
    and the cache epoch in which it was last found live (see :class:`~rlhf_gym.store.access.AccessCache`)."""

    kind: str
    secret_hash: str
    epoch: int


def check_input(fb: Feedback, client_key: str | None) -> None:
    """Refuse values that are not storable JSON (NaN, Infinity, NUL, lone surrogates), naming the field."""
    try:
        check_json({"query_id": fb.query_id, "annotator_id": fb.annotator_id, "value": fb.value, "step": fb.step,
                    "asked_at": fb.asked_at, "answered_at": fb.answered_at, "client_key": client_key}, "feedback")
        check_json(fb.data, "data")
    except UnsafeValue as e:
        raise UnsafeInputError(e) from None


def consent_refusal(annotator_id: str, version: str | None, declined: bool) -> ConsentError:
    which = f"consent version {version!r}" if version else "any consent text"
    state = "declined" if declined else "has not agreed to"
    return ConsentError(f"annotator {annotator_id!r} {state} {which}; no label is accepted without a recorded "
                        "consent (show the purpose and consent text first)")


class BatchMixin:
    """``add_feedback_many``; the host class provides ``session()``, ``consent_version`` and ``access``."""

    consent_version: str | None
    access: AccessCache

    def session(self) -> Session:  # pragma: no cover - provided by FeedbackStore
        raise NotImplementedError

    @retry_conflicts
    def add_feedback_many(self, items: Sequence[tuple[Feedback, str | None]],
                          credentials: Sequence[Credential | None] | None = None) -> list[Feedback | Exception]:
        """Store many answers in one transaction; returns, per item, the stored answer or why it was refused.

        Refusals (nothing written for that item): :class:`UnknownAnnotator`, :class:`Withdrawn`,
        :class:`UnknownQuery`, :class:`NotAssigned` (the query is someone else's), :class:`ConsentError`,
        :class:`UnsafeInputError`, :class:`KeyUsed` (this client key was stored before, or earlier in the
        batch: it names that answer), :class:`KeyConflict` (the key was used for another query),
        :class:`AlreadyAnswered` (a second answer with a client key to the same query), and, when
        ``credentials`` are given, :class:`CredentialEnded` for a token or session revoked meanwhile.
        """
        out: list[Feedback | Exception | None] = [None] * len(items)
        todo: list[int] = []
        for i, (fb, key) in enumerate(items):
            try:
                check_input(fb, key)
                todo.append(i)
            except UnsafeInputError as e:
                out[i] = e
        if not todo:
            return out  # type: ignore[return-value]
        cache = self.access
        if self._pg:
            fast = self._add_fast(items, todo, credentials, out)
            if fast is not None:
                return fast
        with self.session() as s, s.begin():
            _write_lock(s)
            started = time.monotonic()
            seq, head_hash, changed = changed_since(s, cache.generation)
            epoch = cache.observe(seq, changed, started)
            aids = {items[i][0].annotator_id for i in todo}
            qids = {items[i][0].query_id for i in todo}
            people = self._standings(s, aids, epoch)
            queries = self._query_metas(s, qids)
            live: dict[tuple[str, str], str] = {}
            if credentials is not None:
                stale = {(c.kind, c.secret_hash) for i in todo if (c := credentials[i]) is not None and c.epoch != epoch}
                live = _live_credentials(s, stale) if stale else {}
            keys = {items[i][1] for i in todo if items[i][1] is not None}
            by_key, answered = _earlier(s, aids, qids, keys)
            plan = self._decide(items, todo, credentials, out, epoch, people, queries, live, by_key, answered)
            ids: dict[int, int] = {}
            if plan.keyed:
                t = FeedbackRow.__table__  # the Core table: no ORM bookkeeping per row
                got = {(r.annotator_id, r.client_key): r.id for r in s.execute(
                    insert(t).returning(t.c.id, t.c.annotator_id, t.c.client_key), [plan.rows[i] for i in plan.keyed])}
                ids.update({i: got[(items[i][0].annotator_id, items[i][1])] for i in plan.keyed})
            for i in plan.keyless:  # no key to match a multi-row insert's ids by (simulated teachers, one at a time)
                ids[i] = s.execute(insert(FeedbackRow.__table__).returning(FeedbackRow.__table__.c.id),
                                   plan.rows[i]).scalar_one()
            entries = _finish(items, plan, ids, out)
            audit.append_many(s, entries, head=(seq, head_hash) if head_hash is not None else None)
        cache.advance(seq + len(entries), epoch)
        return out  # type: ignore[return-value]

    @property
    def _pg(self) -> bool:
        engine = getattr(self, "engine", None)
        return engine is not None and engine.dialect.name == "postgresql"

    def _add_fast(self, items: Sequence[tuple[Feedback, str | None]], todo: list[int],
                  credentials: Sequence[Credential | None] | None,
                  out: list[Feedback | Exception | None]) -> list[Feedback | Exception] | None:
        """PostgreSQL: decide before the write lock, then hold it for three statements (lock; insert the answers
        *and* run the generation check in one statement; the audit entries with the new checkpoint in one
        statement) and the commit.

        The decisions use the cached standings and credentials (people not in memory are read, after the
        generation was taken, so any change to them since shows in the check), and a read of earlier answers
        made before the lock; they stand only if the generation check under the lock finds nothing but labels audited
        since the generation they were based on (the same check the ordinary path runs), and the database's
        unique indexes refuse any answer another process stored meanwhile. Otherwise the transaction is
        rolled back and None is returned (the caller runs the ordinary path, all under the lock).
        """
        cache = self.access
        gen, epoch = cache.snapshot()
        if gen is None:
            return None
        aids = {items[i][0].annotator_id for i in todo}
        qids = {items[i][0].query_id for i in todo}
        people = {a: st for a in aids if (st := cache.standing(a)) is not None}
        missing = aids - people.keys()
        fresh: list[Standing] = []
        if credentials is not None and any(c is not None and c.epoch != epoch for i in todo if (c := credentials[i])):
            return None
        keys = {items[i][1] for i in todo if items[i][1] is not None}
        trial: list[Feedback | Exception | None] = list(out)
        from sqlalchemy.exc import IntegrityError

        try:
            with self.session() as s, s.begin():
                queries = self._query_metas(s, qids)  # queries never change nor go away: read before the lock
                if len(queries) < len(qids):
                    return None
                if missing:  # read after the snapshot: a change to them since is a non-label entry after ``gen``
                    fresh = self._read_standings(s, missing)
                    people.update({st.id: st for st in fresh})
                by_key, answered = _earlier(s, aids, qids, keys)  # before the lock: the unique indexes back it
                plan = self._decide(items, todo, credentials, trial, epoch, people, queries, {}, by_key, answered)
                if plan.keyless:
                    return None
                _write_lock(s)
                started = time.monotonic()
                ids: dict[int, int] = {}
                if plan.keyed:
                    got = s.connection().exec_driver_sql(_INSERT_AND_CHECK, _columns(
                        [plan.rows[i] for i in plan.keyed], gen)).all()
                    if len(got) != len(plan.keyed):  # no checkpoint row: the ordinary path
                        raise _Fallback
                    seq, head_hash, changed = int(got[0][3]), got[0][4], bool(got[0][5])
                    by = {(r[1], r[2]): r[0] for r in got}
                    ids.update({i: by[(items[i][0].annotator_id, items[i][1])] for i in plan.keyed})
                else:
                    seq, head_hash, changed = changed_since(s, gen)
                    if head_hash is None:
                        raise _Fallback
                if changed or cache.observe(seq, False, started) != epoch:
                    raise _Fallback
                entries = _finish(items, plan, ids, trial)
                audit.append_many(s, entries, head=(seq, head_hash))
        except _Fallback:
            return None
        except IntegrityError as e:  # another process stored one of these answers after our read
            if "uq_feedback" in str(getattr(e, "orig", e)):
                return None
            raise
        for st in fresh:
            cache.put_standing(st, epoch)  # kept only if no invalidation happened meanwhile
        cache.advance(seq + len(entries), epoch)
        return trial  # type: ignore[return-value]

    def _decide(self, items: Sequence[tuple[Feedback, str | None]], todo: list[int],
                credentials: Sequence[Credential | None] | None, out: list[Feedback | Exception | None], epoch: int,
                people: dict[str, Standing], queries: dict[str, QueryMeta], live: dict[tuple[str, str], str],
                by_key: dict[tuple[str, str], Feedback], answered: dict[tuple[str, str], int]) -> _Plan:
        """Each item's fate from the facts read: a refusal in ``out``, or a row to insert."""
        plan = _Plan()
        pending_keys: dict[tuple[str, str], int] = {}
        pending_pairs: dict[tuple[str, str], int] = {}
        for i in todo:
            fb, key = items[i]
            ann = people.get(fb.annotator_id)
            if ann is None:
                out[i] = UnknownAnnotator(fb.annotator_id)
                continue
            if ann.withdrawn:
                out[i] = Withdrawn(fb.annotator_id)
                continue
            cred = credentials[i] if credentials is not None else None
            if cred is not None and cred.epoch != epoch and live.get((cred.kind, cred.secret_hash)) != fb.annotator_id:
                out[i] = CredentialEnded(f"the {'session' if cred.kind == 'session' else 'invite token'} of "
                                         f"{fb.annotator_id!r} was ended, revoked or expired; nothing stored")
                continue
            if key is not None:
                prev = by_key.get((fb.annotator_id, key))
                if prev is not None:
                    out[i] = KeyUsed(key, prev) if prev.query_id == fb.query_id else KeyConflict(key)
                    continue
                if (fb.annotator_id, key) in pending_keys:
                    plan.same_key_later[i] = pending_keys[(fb.annotator_id, key)]
                    continue
            q = queries.get(fb.query_id)
            if q is None:
                out[i] = UnknownQuery(fb.query_id)
                continue
            if q.assigned_to is not None and q.assigned_to != fb.annotator_id:
                out[i] = NotAssigned(fb.query_id, fb.annotator_id)
                continue
            if ann.kind == "human" and not ann.consented:
                out[i] = consent_refusal(fb.annotator_id, self.consent_version, declined=ann.consented is False)
                continue
            if key is not None:
                pair = (fb.query_id, fb.annotator_id)
                if pair in answered:
                    out[i] = AlreadyAnswered(fb.query_id, fb.annotator_id, answered[pair])
                    continue
                if pair in pending_pairs:
                    plan.same_pair_later[i] = pending_pairs[pair]
                    continue
                pending_pairs[pair] = i
                pending_keys[(fb.annotator_id, key)] = i
                plan.keyed.append(i)
            else:
                plan.keyless.append(i)
            plan.rows[i] = {"query_id": fb.query_id, "annotator_id": fb.annotator_id, "value": fb.value,
                            "data": _plain(fb.data), "asked_at": fb.asked_at, "answered_at": fb.answered_at,
                            "step": fb.step, "client_key": key, "withdrawn": False}
        return plan

    def _standings(self, s: Session, aids: set[str], epoch: int) -> dict[str, Standing]:
        """Each annotator's standing: from memory when known in this epoch, else read (two statements)."""
        cache = self.access
        out = {a: st for a in aids if (st := cache.standing(a)) is not None}
        missing = aids - out.keys()
        if missing:
            for st in self._read_standings(s, missing):
                out[st.id] = st
                cache.put_standing(st, epoch)
        return out

    def _read_standings(self, s: Session, aids: set[str]) -> list[Standing]:
        rows = list(s.execute(select(AnnotatorRow.id, AnnotatorRow.kind, AnnotatorRow.withdrawn_at)
                              .where(AnnotatorRow.id.in_(aids))))
        latest = self._consents_of(s, {r.id for r in rows if r.kind == "human"})
        return [Standing(r.id, r.kind, r.withdrawn_at is not None, latest.get(r.id)) for r in rows]

    def _query_metas(self, s: Session, qids: set[str]) -> dict[str, QueryMeta]:
        """Kind, owner and step of each query, from memory (queries never change) or one statement."""
        cache = self.access
        out = {q: m for q in qids if (m := cache.query(q)) is not None}
        missing = qids - out.keys()
        if missing:
            for m in read_query_metas(s, missing):
                out[m.id] = m
                cache.put_query(m)
        return out

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


def read_query_metas(s: Any, qids: set[str] | None = None, where: Sequence[Any] = (),
                     limit: int | None = None) -> list[QueryMeta]:
    """Query metadata without the payload (only a step query's ``step`` and ``episode`` are read from it):
    of the ids ``qids``, or of the oldest ``limit`` queries matching ``where``."""
    step = QueryRow.payload["step"].as_integer()
    episode = QueryRow.payload["episode"].as_integer()
    q = select(QueryRow.id, QueryRow.kind, QueryRow.run_id, QueryRow.created_at, QueryRow.assigned_to, step, episode)
    if qids is not None:
        q = q.where(QueryRow.id.in_(qids))
    if where:
        q = q.where(*where).order_by(QueryRow.created_at, QueryRow.id)
    rows = s.execute(q if limit is None else q.limit(limit))
    return [QueryMeta(r[0], r[1], r[2], r[3], r[4], r[5] if r[1] == "step" else None,
                      r[6] if r[1] == "step" else None) for r in rows]


def _earlier(s: Session, aids: set[str], qids: set[str], keys: set[str]) -> tuple[
        dict[tuple[str, str], Feedback], dict[tuple[str, str], int]]:
    """Stored answers that clash with the batch, in one statement: by client key, and (query, person) pairs."""
    if not keys:
        return {}, {}
    by_key: dict[tuple[str, str], Feedback] = {}
    answered: dict[tuple[str, str], int] = {}
    if s.get_bind().dialect.name == "postgresql":  # fixed text (arrays, not IN lists): prepared once per connection
        rows: Any = s.connection().exec_driver_sql(_PG_EARLIER, {"a": list(aids), "q": list(qids), "k": list(keys)})
    else:
        rows = s.execute(_earlier_select(aids, qids, keys))
    for r in rows:
        if r[0] == 1:
            by_key[(r[3], r[9])] = Feedback(r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[1])
        else:
            answered[(r[2], r[3])] = r[1]
    return by_key, answered


def _earlier_select(aids: set[str], qids: set[str], keys: set[str]) -> Any:
    """:func:`_earlier`'s statement for SQLite (columns in the order of :data:`_PG_EARLIER`)."""
    cols = (FeedbackRow.id, FeedbackRow.query_id, FeedbackRow.annotator_id, FeedbackRow.value, FeedbackRow.asked_at,
            FeedbackRow.answered_at, FeedbackRow.step, FeedbackRow.data, FeedbackRow.client_key)
    by_key_q = select(literal(1).label("why"), *cols).where(FeedbackRow.annotator_id.in_(aids),
                                                           FeedbackRow.client_key.in_(keys))
    pair_q = select(literal(2).label("why"), FeedbackRow.id, FeedbackRow.query_id, FeedbackRow.annotator_id,
                    null().label("value"), null().label("asked_at"), null().label("answered_at"),
                    null().label("step"), null().label("data"), FeedbackRow.client_key).where(
        FeedbackRow.query_id.in_(qids), FeedbackRow.annotator_id.in_(aids), FeedbackRow.client_key.is_not(None))
    return union_all(by_key_q, pair_q)


#: PostgreSQL: :func:`_earlier`'s two reads in one statement whose text never changes
_PG_EARLIER = (
    "SELECT 1, id, query_id, annotator_id, value, asked_at, answered_at, step, data, client_key FROM feedback"
    " WHERE annotator_id = ANY(%(a)s::varchar[]) AND client_key = ANY(%(k)s::varchar[])"
    " UNION ALL SELECT 2, id, query_id, annotator_id, NULL, NULL, NULL, NULL, NULL, client_key FROM feedback"
    " WHERE query_id = ANY(%(q)s::varchar[]) AND annotator_id = ANY(%(a)s::varchar[]) AND client_key IS NOT NULL")


@dataclass
class _Plan:
    """What a batch will insert: rows by item, keyed and keyless items, and items resolved by an earlier one."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    keyed: list[int] = field(default_factory=list)
    keyless: list[int] = field(default_factory=list)
    same_key_later: dict[int, int] = field(default_factory=dict)  # item -> the item first stored with its key
    same_pair_later: dict[int, int] = field(default_factory=dict)  # item -> the item that answered its query first


class _Fallback(Exception):
    """The fast path cannot stand (something other than labels was audited meanwhile): roll back."""


def _finish(items: Sequence[tuple[Feedback, str | None]], plan: _Plan, ids: dict[int, int],
            out: list[Feedback | Exception | None]) -> list[tuple[str, str, dict[str, Any]]]:
    """Fill in the stored answers and the answers resolved by an earlier item; the audit entries to append."""
    entries = []
    for i in sorted(ids):
        fb = items[i][0]
        out[i] = Feedback(fb.query_id, fb.annotator_id, fb.value, fb.asked_at, fb.answered_at, fb.step,
                          plan.rows[i]["data"], ids[i])
        entries.append((fb.annotator_id, "feedback.add", {"feedback": ids[i], "query": fb.query_id,
                                                           "value": fb.value}))
    for i, first in plan.same_key_later.items():
        done = out[first]
        out[i] = KeyUsed(items[i][1] or "", done) if isinstance(done, Feedback) else done
    for i, first in plan.same_pair_later.items():
        fb = items[i][0]
        out[i] = AlreadyAnswered(fb.query_id, fb.annotator_id, ids[first])
    return entries


#: PostgreSQL, under the write lock: the batch's answers (one array per column, so the text never changes
#: and the server keeps it prepared) and, in the same statement and snapshot, the generation check of
#: :func:`~rlhf_gym.store.access.changed_since` (head seq, hash, whether an entry after ``since`` is not a label)
_INSERT_AND_CHECK = (
    "WITH ins AS (INSERT INTO feedback (query_id, annotator_id, value, data, asked_at, answered_at, step, client_key,"
    " withdrawn) SELECT q, a, v, d, t0, t1, st, k, false FROM unnest(%(q)s::varchar[], %(a)s::varchar[],"
    " %(v)s::float8[], %(d)s::text[]::json[], %(t0)s::float8[], %(t1)s::float8[], %(st)s::text[]::int[],"
    " %(k)s::varchar[]) AS r(q, a, v, d, t0, t1, st, k) RETURNING id, annotator_id, client_key)"
    " SELECT ins.id, ins.annotator_id, ins.client_key, h.seq, h.hash, h.changed FROM ins CROSS JOIN"
    " (SELECT seq, hash, EXISTS (SELECT 1 FROM audit_log WHERE seq > %(since)s AND action <> %(label)s) AS changed"
    " FROM audit_head WHERE id = 1) AS h")


def _columns(rows: list[dict[str, Any]], since: int) -> dict[str, Any]:
    """The parameters of :data:`_INSERT_AND_CHECK`; ``data`` as the JSON text SQLAlchemy's JSON type writes."""
    return {"q": [r["query_id"] for r in rows], "a": [r["annotator_id"] for r in rows],
            "v": [r["value"] for r in rows], "d": [json.dumps(r["data"]) for r in rows],
            "t0": [r["asked_at"] for r in rows], "t1": [r["answered_at"] for r in rows],
            "st": [None if r["step"] is None else str(int(r["step"])) for r in rows],
            "k": [r["client_key"] for r in rows], "since": since, "label": LABEL_ACTION}


def _live_credentials(s: Session, creds: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(kind, secret hash) -> annotator id, for the credentials still live now (read under the write lock)."""
    now = time.time()
    out: dict[tuple[str, str], str] = {}
    sessions = {h for k, h in creds if k == "session"}
    tokens = {h for k, h in creds if k != "session"}
    if sessions:
        for sid, aid in s.execute(select(SessionRow.id, SessionRow.annotator_id).where(
                SessionRow.id.in_(sessions), SessionRow.ended_at.is_(None), SessionRow.expires_at > now)):
            out[("session", sid)] = aid
    if tokens:
        for th, aid in s.execute(select(AnnotatorRow.token_hash, AnnotatorRow.id).where(
                AnnotatorRow.token_hash.in_(tokens),
                or_(AnnotatorRow.token_expires_at.is_(None), AnnotatorRow.token_expires_at > now))):
            out[("token", th)] = aid
    return out


def _plain(data: dict | None) -> dict | None:
    """The answer's data as the database gives it back (plain JSON types), so the returned answer matches it."""
    return None if data is None else json.loads(json.dumps(data))


def _write_lock(s: Session) -> None:
    """Take the database's write lock before the checks, so they see every committed change."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    else:
        s.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))


__all__ = ["BatchMixin", "Credential", "StoreError", "check_input", "consent_refusal", "read_query_metas"]
