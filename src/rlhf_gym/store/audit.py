"""Append-only, hash-chained audit log with a signed head checkpoint.

Each entry's hash covers its sequence number, time, actor, action, payload and the previous entry's
hash, so changing, deleting or reordering any entry breaks every hash after it.

The chain alone cannot show that its *last* entries were removed (a shorter chain is still a valid
chain). So every append also updates a one-row ``audit_head`` table in the same transaction with the
new entry's ``seq`` and ``hash`` plus an HMAC of both. :func:`verify` recomputes the chain and then
checks that it ends exactly at the checkpoint, naming the first missing entry when it does not.

The HMAC key comes from the environment variable ``RLHF_GYM_AUDIT_KEY``. Without it a fixed public
key is used: that still catches plain deletion of the last rows (or of the checkpoint), but someone
who knows this code could rewrite the checkpoint too. With a secret key kept outside the database,
the checkpoint cannot be forged. Against an attacker who also holds the key (or replays an old
checkpoint row), publish the head now and then (``rlhf-gym audit head``) and verify against it
later (``rlhf-gym audit verify --expect SEQ:HASH``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from rlhf_gym.store.schema import AuditHeadRow, AuditRow

T = TypeVar("T")
GENESIS = "0" * 64
KEY_ENV = "RLHF_GYM_AUDIT_KEY"
_PUBLIC_KEY = b"rlhf-gym audit head (no RLHF_GYM_AUDIT_KEY set)"


def entry_hash(seq: int, at: float, actor: str, action: str, payload: dict[str, Any], prev_hash: str) -> str:
    body = json.dumps([seq, repr(float(at)), actor, action, payload, prev_hash], sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def head_mac(seq: int, hash_: str, key: bytes | None = None) -> str:
    """HMAC-SHA256 of the checkpoint, keyed by ``RLHF_GYM_AUDIT_KEY`` (read at call time)."""
    if key is None:
        env = os.environ.get(KEY_ENV)
        key = env.encode() if env else _PUBLIC_KEY
    return hmac.new(key, f"{seq}:{hash_}".encode(), hashlib.sha256).hexdigest()


def is_conflict(err: BaseException) -> bool:
    """A write that lost a race with another writer and can be retried from the start.

    Two transactions chaining onto the same audit entry (the database refuses the second: ``seq`` is
    the primary key and ``prev_hash`` is unique), a run, annotator or query created by another
    process between our look and our insert, SQLite's "database is locked", or a PostgreSQL
    serialization failure or deadlock.
    """
    msg = str(getattr(err, "orig", err)).lower()
    return (any(k in msg for k in ("audit_log", "uq_audit_prev_hash", "database is locked", "could not serialize",
                                   "deadlock detected"))
            # "create if missing" rows made by another process in between: the retry finds them
            or any(k in msg for k in ("runs.id", "runs_pkey", "annotators.id", "annotators_pkey", "queries.id",
                                      "queries_pkey")))


def retry_conflicts(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a store write again (a fresh transaction) when it lost a race with another process."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        from sqlalchemy.exc import IntegrityError, OperationalError

        for attempt in range(8):
            try:
                return fn(*args, **kwargs)
            except (IntegrityError, OperationalError) as e:
                if attempt == 7 or not is_conflict(e):
                    raise
                time.sleep(random.uniform(0.001, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    return wrapper


def append(session: Session, actor: str, action: str, payload: dict[str, Any] | None = None) -> AuditRow:
    """Append one entry inside the caller's transaction (so it commits or rolls back with the change).

    The writer takes the database's write lock before it reads the chain's head, so two processes
    never chain onto the same predecessor; should one still do so, the database refuses it (unique
    ``seq`` and ``prev_hash``) and :func:`retry_conflicts` runs the whole write again.
    """
    payload = payload or {}
    if session.get_bind().dialect.name == "postgresql":
        # Serialise writers so two transactions never chain onto the same predecessor.
        session.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    else:
        # SQLite: a write statement first, so the transaction holds the write lock while it reads the head
        # (otherwise the read runs before the transaction begins and another process can append in between).
        session.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
    last = session.execute(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).scalar_one_or_none()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS if last is None else last.hash
    at = time.time()
    # Round-trip the payload through JSON so the hash is computed on exactly what the DB returns.
    payload = json.loads(json.dumps(payload, default=str))
    row = AuditRow(seq=seq, at=at, actor=actor, action=action, payload=payload, prev_hash=prev,
                   hash=entry_hash(seq, at, actor, action, payload, prev))
    session.add(row)
    head = session.get(AuditHeadRow, 1)
    if head is None:
        session.add(AuditHeadRow(id=1, seq=seq, hash=row.hash, mac=head_mac(seq, row.hash)))
    else:
        head.seq, head.hash, head.mac = seq, row.hash, head_mac(seq, row.hash)
    session.flush()
    return row


def append_many(session: Session, entries: list[tuple[str, str, dict[str, Any]]],
                head: tuple[int, str] | None = None) -> None:
    """Append several entries in the caller's transaction with one insert (group commit of labels).

    Takes the write lock first (as :func:`append` does), reads the chain's head once from the signed
    checkpoint row (kept in the same transaction as every append, so it is the database's own
    head), computes the new entries in memory and writes them and the new checkpoint at once.
    ``head=(seq, hash)``: the caller already holds the write lock and read the checkpoint in this
    transaction (the label writer does, with its generation check), so neither is done again.
    """
    if not entries:
        return
    from sqlalchemy import insert, update

    row = None
    if head is not None:
        seq, prev = head
    else:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        else:
            session.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
        row = session.execute(select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == 1)).first()
        if row is None:  # no checkpoint yet: fall back to the log itself (first entries of a store)
            last = session.execute(select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)).first()
            seq, prev = (0, GENESIS) if last is None else (last.seq, last.hash)
        else:
            seq, prev = row.seq, row.hash
    had_head = head is not None or row is not None
    rows = []
    for actor, action, payload in entries:
        seq += 1
        at = time.time()
        payload = json.loads(json.dumps(payload, default=str))
        h = entry_hash(seq, at, actor, action, payload, prev)
        rows.append({"seq": seq, "at": at, "actor": actor, "action": action, "payload": payload,
                     "prev_hash": prev, "hash": h})
        prev = h
    if had_head and session.get_bind().dialect.name == "postgresql":
        # one statement (one round trip under the write lock), its text the same for any number of entries
        session.connection().exec_driver_sql(_PG_APPEND, {
            "seq": [r["seq"] for r in rows], "at": [r["at"] for r in rows], "actor": [r["actor"] for r in rows],
            "action": [r["action"] for r in rows], "payload": [json.dumps(r["payload"]) for r in rows],
            "prev": [r["prev_hash"] for r in rows], "hash": [r["hash"] for r in rows],
            "head_seq": seq, "head_hash": prev, "mac": head_mac(seq, prev)})
        return
    session.execute(insert(AuditRow.__table__), rows)  # Core: no ORM bookkeeping per row
    if not had_head:
        session.add(AuditHeadRow(id=1, seq=seq, hash=prev, mac=head_mac(seq, prev)))
    else:
        session.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1)
                        .values(seq=seq, hash=prev, mac=head_mac(seq, prev)))
    session.flush()


#: PostgreSQL: entries (one array per column) and the new checkpoint in one statement
_PG_APPEND = (
    "WITH new_entries AS (INSERT INTO audit_log (seq, at, actor, action, payload, prev_hash, hash)"
    " SELECT * FROM unnest(%(seq)s::int[], %(at)s::float8[], %(actor)s::varchar[], %(action)s::varchar[],"
    " %(payload)s::text[]::json[], %(prev)s::varchar[], %(hash)s::varchar[]))"
    " UPDATE audit_head SET seq = %(head_seq)s, hash = %(head_hash)s, mac = %(mac)s WHERE id = 1")


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`: ``first_bad_seq`` names the first entry that is wrong or missing."""

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str = ""
    head_seq: int | None = None
    head_hash: str | None = None


def verify(session: Session, expect: tuple[int, str] | None = None) -> VerifyResult:
    """Recompute the chain; report the first entry whose hash, link or sequence is wrong or missing.

    Also checks that the chain ends at the signed head checkpoint (catches a truncated tail) and,
    when ``expect=(seq, hash)`` is given (a head published earlier), that this entry is still there.
    """
    prev = GENESIS
    expected_seq = 1
    n = 0
    seen: dict[int, str] = {}
    for row in session.execute(select(AuditRow).order_by(AuditRow.seq)).scalars():
        n += 1
        if row.seq != expected_seq:
            return VerifyResult(False, n, expected_seq, f"entry {expected_seq} is missing (found {row.seq} next)")
        if row.prev_hash != prev:
            return VerifyResult(False, n, row.seq, f"entry {row.seq} ({row.action}) does not link to the entry "
                                                   "before it (entries reordered, replaced or removed)")
        if entry_hash(row.seq, row.at, row.actor, row.action, row.payload, row.prev_hash) != row.hash:
            return VerifyResult(False, n, row.seq, f"entry {row.seq} ({row.action}) was changed after it was written")
        prev = row.hash
        expected_seq += 1
        if expect is not None and row.seq == expect[0]:
            seen[row.seq] = row.hash
    last_seq = expected_seq - 1
    head = session.get(AuditHeadRow, 1)
    if head is None:
        if n:
            return VerifyResult(False, n, last_seq + 1, "the head checkpoint is missing, so entries after "
                                f"{last_seq} may have been deleted")
    else:
        if not hmac.compare_digest(head.mac, head_mac(head.seq, head.hash)):
            return VerifyResult(False, n, min(head.seq, last_seq + 1),
                                f"the head checkpoint's signature does not match (checkpoint rewritten, or a "
                                f"different {KEY_ENV} than when it was written)")
        if head.seq > last_seq:
            return VerifyResult(False, n, last_seq + 1, f"entries {last_seq + 1}..{head.seq} were deleted from the "
                                f"end of the log (the checkpoint says it has {head.seq} entries)")
        if head.seq < last_seq:
            return VerifyResult(False, n, head.seq + 1, f"entries {head.seq + 1}..{last_seq} were added outside "
                                "the store (after the signed checkpoint)")
        if head.hash != prev:
            return VerifyResult(False, n, last_seq, f"entry {last_seq} does not match the signed head checkpoint")
    if expect is not None:
        eseq, ehash = expect
        if eseq > last_seq:
            return VerifyResult(False, n, last_seq + 1, f"entry {eseq} of the published head is missing "
                                f"(the log ends at {last_seq})")
        if seen.get(eseq) != ehash:
            return VerifyResult(False, n, eseq, f"entry {eseq} differs from the published head hash")
    return VerifyResult(True, n, head_seq=last_seq if n else None, head_hash=prev if n else None)


def entries(session: Session) -> list[dict[str, Any]]:
    """Every entry as a JSON-safe dict, in order (for exports and the admin page)."""
    return [{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "payload": r.payload,
             "prev_hash": r.prev_hash, "hash": r.hash}
            for r in session.execute(select(AuditRow).order_by(AuditRow.seq)).scalars()]
