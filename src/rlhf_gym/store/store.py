"""The feedback store: every query and answer, committed before any learner uses it.

One class over SQLAlchemy so the embedded default (SQLite, a file in the run folder) and a shared
PostgreSQL server (``postgresql+psycopg://...``) go through the same code. Each write is its own
transaction and writes an audit entry in that same transaction.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, insert, select
from sqlalchemy.orm import Session, sessionmaker

from rlhf_gym.store import audit, migrate
from rlhf_gym.store.access import AccessCache, query_meta_of
from rlhf_gym.store.annotation import AnnotationMixin
from rlhf_gym.store.audit import retry_conflicts
from rlhf_gym.store.batch import BatchMixin, consent_refusal
from rlhf_gym.store.errors import KeyUsed, StoreError, UnknownAnnotator, UnknownQuery, UnsafeInputError
from rlhf_gym.store.jsonsafe import UnsafeValue, check_json, clean_json
from rlhf_gym.store.lineage import LineageMixin
from rlhf_gym.store.schema import (
    AnnotatorRow,
    ConsentRow,
    FeedbackRow,
    QueryRow,
    RunRow,
)
from rlhf_gym.store.sessions import SessionsMixin, hash_token
from rlhf_gym.store.transfer import TransferMixin
from rlhf_gym.types import Feedback, PairQuery, Query, new_id


def _check(value: Any, where: str) -> None:
    try:
        check_json(value, where)
    except UnsafeValue as e:
        raise UnsafeInputError(e) from None


def resolve_url(db: str | Path) -> str:
    """Accept a SQLAlchemy URL or a plain file path (made into a SQLite URL)."""
    s = str(db)
    if "://" in s:
        if s.startswith("postgresql://"):
            s = "postgresql+psycopg://" + s[len("postgresql://"):]
        return s
    Path(s).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(s).resolve()}"


class FeedbackStore(SessionsMixin, AnnotationMixin, BatchMixin, LineageMixin, TransferMixin):
    """Annotators (invites, sessions), consents, runs, queries, feedback, models with lineage, the audit log."""

    def __init__(self, db: str | Path = "feedback.db", *, consent_version: str | None = None, echo: bool = False,
                 check_schema: bool = True, frames_dir: str | Path | None = None) -> None:
        """Open (or create) the store; an existing store must be at this release's schema revision.

        ``check_schema=False`` only for ``rlhf-gym db upgrade``, which brings an older store up to date.
        ``frames_dir``: where pixel clips' frames are kept (default: beside the store).
        """
        self.url = resolve_url(db)
        #: where pixel clips are kept (beside an SQLite file by default; inline base64 for a server without one)
        self.frames = frames_codec(self.url, frames_dir)
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if ":memory:" not in self.url and self.url != "sqlite://":
            # a web server's thread pool (40 threads) shares the engine: connections beyond the pool
            # are opened and closed for each use, which costs more than the statement they run
            kwargs.update(pool_size=20, max_overflow=20)
        self.engine = create_engine(self.url, **kwargs)
        if self.url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            _ping_when_idle(self.engine)
        if check_schema:
            migrate.ensure(self.engine, self.display_url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        #: who may answer what, kept in memory and checked against the audit log (see store/access.py)
        self.access = AccessCache()
        #: when set, people (kind="human") need a consent to this version before any label is taken
        self.consent_version = consent_version

    @property
    def consent_version(self) -> str | None:
        """The consent text version a person must have agreed to (None: any recorded agreement)."""
        return self._consent_version

    @consent_version.setter
    def consent_version(self, v: str | None) -> None:
        if getattr(self, "_consent_version", object()) != v:
            self.access.clear()  # cached consent standings were about another version
        self._consent_version = v

    @property
    def display_url(self) -> str:
        """The store's location without any password (a file path for SQLite)."""
        if self.url.startswith("sqlite:///"):
            return self.url[len("sqlite:///"):]
        return self.engine.url.render_as_string(hide_password=True)

    def session(self) -> Session:
        return self._session()

    def close(self) -> None:
        self.engine.dispose()

    # -- annotators and consent -------------------------------------------------------------------
    @retry_conflicts
    def add_annotator(self, annotator_id: str | None = None, *, kind: str = "simulated", token: str | None = None,
                      role: str = "annotator", meta: dict | None = None, actor: str = "system",
                      token_ttl: float | None = None) -> str:
        """Register an annotator (idempotent for an existing id). Returns the id.

        ``token`` is the invite token (stored hashed); it stops working ``token_ttl`` seconds from now
        (None: only when revoked).
        """
        if kind not in ("human", "simulated"):
            raise StoreError(f"annotator kind must be 'human' or 'simulated', got {kind!r}")
        aid = annotator_id or new_id("ann")
        _check({"id": aid, "meta": meta}, "annotator")
        with self.session() as s, s.begin():
            if s.get(AnnotatorRow, aid) is not None:
                return aid
            now = time.time()
            s.add(AnnotatorRow(id=aid, kind=kind, role=role, created_at=now, meta=meta,
                               token_hash=hash_token(token) if token else None,
                               token_expires_at=None if token_ttl is None else now + token_ttl))
            audit.append(s, actor, "annotator.add", {"annotator": aid, "kind": kind, "role": role})
        return aid

    def annotator(self, annotator_id: str) -> AnnotatorRow | None:
        with self.session() as s:
            return s.get(AnnotatorRow, annotator_id)

    def annotators(self) -> list[AnnotatorRow]:
        with self.session() as s:
            return list(s.execute(select(AnnotatorRow).order_by(AnnotatorRow.created_at)).scalars())

    @retry_conflicts
    def record_consent(self, annotator_id: str, version: str, text: str, agreed: bool) -> None:
        _check({"annotator_id": annotator_id, "version": version}, "consent")
        with self.session() as s, s.begin():
            if s.get(AnnotatorRow, annotator_id) is None:
                raise UnknownAnnotator(annotator_id)
            s.add(ConsentRow(annotator_id=annotator_id, version=version, agreed=agreed, at=time.time(),
                             text_hash=hashlib.sha256(text.encode()).hexdigest()))
            audit.append(s, annotator_id, "consent.agree" if agreed else "consent.decline",
                         {"annotator": annotator_id, "version": version})
        self.access.forget(annotator_id)

    def _check_consent(self, s: Session, annotator_id: str) -> None:
        """Raise ConsentError unless this person's latest decision (for the current version) is yes.

        With ``consent_version`` set (terminal and web set it from the owner's policy) the decision must
        be about that version, so a changed text asks again; without it any recorded agreement counts,
        so a person never gives a label with no consent on record at all.
        """
        decision = self._consents_of(s, {annotator_id}).get(annotator_id)
        if not decision:
            raise consent_refusal(annotator_id, self.consent_version, declined=decision is False)

    def consent_status(self, annotator_id: str) -> dict[str, Any] | None:
        """The latest consent decision of this person (version, agreed, time), or None."""
        with self.session() as s:
            c = s.execute(select(ConsentRow).where(ConsentRow.annotator_id == annotator_id)
                          .order_by(ConsentRow.at.desc(), ConsentRow.id.desc()).limit(1)).scalar_one_or_none()
            return None if c is None else {"version": c.version, "agreed": c.agreed, "at": c.at}

    def consents(self, annotator_id: str) -> list[dict[str, Any]]:
        """Every consent decision of this person, oldest first."""
        with self.session() as s:
            rows = s.execute(select(ConsentRow).where(ConsentRow.annotator_id == annotator_id)
                             .order_by(ConsentRow.at, ConsentRow.id)).scalars()
            return [{"version": c.version, "text_hash": c.text_hash, "agreed": c.agreed, "at": c.at} for c in rows]

    def has_consent(self, annotator_id: str, version: str | None = None) -> bool:
        """True when the latest decision for ``version`` (default: the store's) is an agreement."""
        version = version or self.consent_version
        with self.session() as s:
            q = select(ConsentRow).where(ConsentRow.annotator_id == annotator_id)
            if version is not None:
                q = q.where(ConsentRow.version == version)
            row = s.execute(q.order_by(ConsentRow.at.desc(), ConsentRow.id.desc()).limit(1)).scalar_one_or_none()
            return bool(row and row.agreed)

    # -- runs and queries ---------------------------------------------------------------------
    @retry_conflicts
    def add_run(self, run_id: str | None = None, config: dict | None = None) -> str:
        rid = run_id or new_id("run")
        with self.session() as s, s.begin():
            if s.get(RunRow, rid) is None:
                s.add(RunRow(id=rid, created_at=time.time(), config=_json_safe(config)))
                audit.append(s, "system", "run.start", {"run": rid})
        return rid

    def run_env(self, run_id: str | None) -> str | None:
        """The environment id recorded in a run's config (``env`` or ``env_id``), or None."""
        if run_id is None:
            return None
        with self.session() as s:
            run = s.get(RunRow, run_id)
            cfg = (run.config or {}) if run is not None else {}
        env = cfg.get("env") or cfg.get("env_id")
        return str(env) if env else None

    def run_config(self, run_id: str) -> dict[str, Any] | None:
        """The config a run was started with (``add_run``'s), or None for an unknown run."""
        with self.session() as s:
            run = s.get(RunRow, run_id)
            return None if run is None else dict(run.config or {})

    def has_query(self, query_id: str) -> bool:
        with self.session() as s:
            return s.get(QueryRow, query_id) is not None

    def has_answer(self, query_id: str, annotator_id: str, answered_at: float) -> bool:
        """Whether this answer (same query, annotator and answer time) is already stored: re-imports add nothing."""
        with self.session() as s:
            return s.execute(select(FeedbackRow.id).where(
                FeedbackRow.query_id == query_id, FeedbackRow.annotator_id == annotator_id,
                FeedbackRow.answered_at == answered_at)).first() is not None

    @retry_conflicts
    def add_queries(self, queries: Sequence[Query], run_id: str | None = None,
                    assigned_to: str | None = None) -> list[str]:
        """Store queries; ids already present are left as they are (re-posting is harmless)."""
        new: list[str] = []
        metas = []
        with self.session() as s, s.begin():  # a few set-based statements, not one read per query
            ids = list(dict.fromkeys(q.id for q in queries))
            present = {r[0] for i in range(0, len(ids), 500)
                       for r in s.execute(select(QueryRow.id).where(QueryRow.id.in_(ids[i:i + 500])))}
            fresh = []
            for q in queries:  # the same id twice in one call: the first is stored
                if q.id not in present:
                    present.add(q.id)
                    fresh.append(q)
            if fresh:
                if assigned_to is not None and s.get(AnnotatorRow, assigned_to) is None:
                    raise UnknownAnnotator(assigned_to)  # before any payload writes its frames
                runs = {rid for q in fresh if (rid := q.run_id or run_id) is not None}
                known = {r[0] for r in s.execute(select(RunRow.id).where(RunRow.id.in_(runs)))} if runs else set()
                s.add_all(RunRow(id=rid, created_at=time.time()) for rid in sorted(runs - known))
                s.flush()
                rows = []
                for q in fresh:
                    rid = q.run_id or run_id
                    rows.append({"id": q.id, "run_id": rid, "kind": q.kind, "payload": q.payload(self.frames),
                                 "created_at": q.created_at, "assigned_to": assigned_to})
                    new.append(q.id)
                    metas.append(query_meta_of(q, rid, assigned_to))
                s.execute(insert(QueryRow.__table__), rows)
        for m in metas:  # committed: labels to them need not read them back
            self.access.put_query(m)
        return new

    @retry_conflicts
    def set_gold(self, query_id: str, value: float | None, actor: str = "admin") -> None:
        """Mark a stored query as an attention check with a known answer (None clears it). Audited."""
        if value is not None and not (0.0 <= float(value) <= 1.0):
            raise StoreError(f"gold value must be in [0, 1] (1 = left/good, 0 = right/bad), got {value!r}")
        with self.session() as s, s.begin():
            row = s.get(QueryRow, query_id)
            if row is None:
                raise UnknownQuery(query_id)
            row.gold_value = None if value is None else float(value)
            audit.append(s, actor, "gold.set", {"query": query_id, "value": row.gold_value})

    def gold_values(self) -> dict[str, float]:
        """Query id -> known answer, for every seeded attention check."""
        with self.session() as s:
            rows = s.execute(select(QueryRow.id, QueryRow.gold_value).where(QueryRow.gold_value.is_not(None)))
            return {qid: float(v) for qid, v in rows}

    def query(self, query_id: str) -> Query:
        with self.session() as s:
            row = s.get(QueryRow, query_id)
            if row is None:
                raise UnknownQuery(query_id)
            return _query_from_row(row, self.frames)

    def queries(self, run_id: str | None = None, kind: str | None = None) -> list[Query]:
        with self.session() as s:
            q = select(QueryRow)
            if run_id is not None:
                q = q.where(QueryRow.run_id == run_id)
            if kind is not None:
                q = q.where(QueryRow.kind == kind)
            return [_query_from_row(r, self.frames) for r in s.execute(q.order_by(QueryRow.created_at)).scalars()]

    # -- feedback -------------------------------------------------------------------------------
    def add_feedback(self, fb: Feedback, client_key: str | None = None) -> Feedback:
        """Commit one answer (with its audit entry) and return it with its row id.

        The rules are those of :meth:`add_feedback_many` (one place): refused with a
        :class:`StoreError` subclass, nothing written, for an unknown query or annotator, a withdrawn
        annotator, a query assigned to someone else, or a person without consent. A repeated
        ``client_key`` from the same annotator returns the first stored answer instead of a duplicate.
        """
        res = self.add_feedback_many([(fb, client_key)])[0]
        if isinstance(res, KeyUsed):
            return res.feedback
        if isinstance(res, Exception):
            raise res
        return res

    def feedback(self, run_id: str | None = None, kind: str | None = None, annotator_id: str | None = None,
                 include_withdrawn: bool = False, include_skipped: bool = True) -> list[Feedback]:
        """Stored answers in the order given. Withdrawn ones are left out unless asked for."""
        with self.session() as s:
            q = select(FeedbackRow).join(QueryRow, QueryRow.id == FeedbackRow.query_id)
            if run_id is not None:
                q = q.where(QueryRow.run_id == run_id)
            if kind is not None:
                q = q.where(QueryRow.kind == kind)
            if annotator_id is not None:
                q = q.where(FeedbackRow.annotator_id == annotator_id)
            if not include_withdrawn:
                q = q.where(FeedbackRow.withdrawn.is_(False))
            rows = s.execute(q.order_by(FeedbackRow.id)).scalars()
            out = [_feedback_from_row(r) for r in rows]
        if not include_skipped:
            out = [f for f in out if not f.skipped]
        return out

    def labelled_pairs(self, run_id: str | None = None) -> list[tuple[PairQuery, Feedback]]:
        """Preference queries joined with their (non-withdrawn, non-skipped) answers."""
        fbs = self.feedback(run_id=run_id, kind="pair", include_skipped=False)
        cache: dict[str, Query] = {}
        out = []
        for fb in fbs:
            if fb.query_id not in cache:
                cache[fb.query_id] = self.query(fb.query_id)
            q = cache[fb.query_id]
            assert isinstance(q, PairQuery)
            out.append((q, fb))
        return out

    # -- audit ------------------------------------------------------------------------------------
    @retry_conflicts
    def audit(self, actor: str, action: str, payload: dict | None = None) -> None:
        with self.session() as s, s.begin():
            audit.append(s, actor, action, payload)

    def verify_audit(self, expect: tuple[int, str] | None = None) -> audit.VerifyResult:
        """Check the hash chain and the signed head (see :func:`rlhf_gym.store.audit.verify`)."""
        with self.session() as s:
            return audit.verify(s, expect)

    def audit_entries(self) -> list[dict[str, Any]]:
        with self.session() as s:
            return audit.entries(s)


#: a pooled server connection unused for longer than this is tested before it is handed out
PING_AFTER_IDLE_S = 10.0


def _ping_when_idle(engine: Any) -> None:
    """Test a pooled connection with ``SELECT 1`` before use, but only one left idle for
    :data:`PING_AFTER_IDLE_S` (a database restarted or a firewall that dropped it shows up then).

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: a round trip per label batch on the web
    app's busy writer connection. A connection found dead is replaced (``DisconnectionError`` makes the
    pool open a new one) before any statement of the caller runs.
    """
    from sqlalchemy.exc import DisconnectionError

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("rlhf_gym_last_used")
        if last is not None and time.monotonic() - last > PING_AFTER_IDLE_S:
            try:
                cur = dbapi_conn.cursor()
                try:
                    cur.execute("SELECT 1")
                finally:
                    cur.close()
                dbapi_conn.rollback()  # hand the connection over outside any transaction, as it was
            except Exception as e:  # noqa: BLE001 - any failure means the connection is unusable
                raise DisconnectionError(f"pooled connection failed its ping: {e}") from e

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["rlhf_gym_last_used"] = time.monotonic()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # an acknowledged answer survives a killed process
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _json_safe(x: Any) -> Any:
    """Internal records (run configs): made plain JSON, with NaN/Infinity/bad characters cleaned."""
    return None if x is None else clean_json(json.loads(json.dumps(x, default=str)))


def _query_from_row(row: QueryRow, frames: Any = None) -> Query:
    return Query.from_dict({"id": row.id, "kind": row.kind, "run_id": row.run_id, "created_at": row.created_at,
                            "payload": row.payload}, frames)


def frames_codec(url: str, frames_dir: str | Path | None) -> Any:
    """Pixel clips' home: ``frames_dir``, else ``<name>.frames/`` beside an SQLite file, else inline."""
    from rlhf_gym.store.frames import FrameFiles, InlineFrames

    if frames_dir is not None:
        return FrameFiles(frames_dir)
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return FrameFiles(Path(url[len("sqlite:///"):]).with_suffix(".frames"))
    return InlineFrames()


def _feedback_from_row(r: FeedbackRow) -> Feedback:
    return Feedback(r.query_id, r.annotator_id, r.value, r.asked_at, r.answered_at, r.step, r.data, r.id)
