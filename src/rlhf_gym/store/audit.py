"""Append-only, hash-chained audit log.

Each entry's hash covers its sequence number, time, actor, action, payload and the previous entry's
hash, so changing, deleting or reordering any entry breaks every hash after it. :func:`verify`
recomputes the chain and names the first entry that does not fit.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from rlhf_gym.store.schema import AuditRow

GENESIS = "0" * 64


def entry_hash(seq: int, at: float, actor: str, action: str, payload: dict[str, Any], prev_hash: str) -> str:
    body = json.dumps([seq, repr(float(at)), actor, action, payload, prev_hash], sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def append(session: Session, actor: str, action: str, payload: dict[str, Any] | None = None) -> AuditRow:
    """Append one entry inside the caller's transaction (so it commits or rolls back with the change)."""
    payload = payload or {}
    if session.get_bind().dialect.name == "postgresql":
        # Serialise writers so two transactions never chain onto the same predecessor.
        session.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    last = session.execute(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).scalar_one_or_none()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS if last is None else last.hash
    at = time.time()
    # Round-trip the payload through JSON so the hash is computed on exactly what the DB returns.
    payload = json.loads(json.dumps(payload, default=str))
    row = AuditRow(seq=seq, at=at, actor=actor, action=action, payload=payload, prev_hash=prev,
                   hash=entry_hash(seq, at, actor, action, payload, prev))
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str = ""


def verify(session: Session) -> VerifyResult:
    """Recompute the chain; report the first entry whose hash, link or sequence is wrong."""
    prev = GENESIS
    expected_seq = 1
    n = 0
    for row in session.execute(select(AuditRow).order_by(AuditRow.seq)).scalars():
        n += 1
        if row.seq != expected_seq:
            return VerifyResult(False, n, row.seq, f"entry {expected_seq} is missing (found {row.seq} next)")
        if row.prev_hash != prev:
            return VerifyResult(False, n, row.seq, f"entry {row.seq} does not link to the entry before it")
        if entry_hash(row.seq, row.at, row.actor, row.action, row.payload, row.prev_hash) != row.hash:
            return VerifyResult(False, n, row.seq, f"entry {row.seq} ({row.action}) was changed after it was written")
        prev = row.hash
        expected_seq += 1
    return VerifyResult(True, n)
