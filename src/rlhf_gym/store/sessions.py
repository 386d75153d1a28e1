"""Invite tokens and browser sessions of annotators (part of :class:`~rlhf_gym.store.FeedbackStore`).

An invite token (``rlhf-gym annotators invite``) is exchanged for a session when the link is opened;
the browser's cookie holds only the session's random secret. Both are stored as SHA-256 hashes.
Logging out or withdrawing ends every session of that person at once; an invite can expire and can
be revoked (which also ends its sessions); a withdrawn person's invite is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from rlhf_gym.store import audit
from rlhf_gym.store.access import AccessCache, Holder
from rlhf_gym.store.audit import retry_conflicts
from rlhf_gym.store.errors import StoreError, UnknownAnnotator
from rlhf_gym.store.schema import AnnotatorRow, SessionRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: how long a browser session lasts unless the person logs out first
SESSION_TTL = 7 * 24 * 3600.0


def hash_token(secret: str) -> str:
    """How invite tokens and session secrets are kept: only their SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionsMixin:
    """Session and invite methods; the host class provides ``session()`` (a SQLAlchemy session)."""

    access: AccessCache

    def session(self) -> Session:  # pragma: no cover - provided by FeedbackStore
        raise NotImplementedError

    def annotator_by_token(self, token: str, now: float | None = None) -> AnnotatorRow | None:
        """The annotator whose invite token this is, unless it expired or was revoked."""
        now = time.time() if now is None else now
        with self.session() as s:
            return s.execute(select(AnnotatorRow).where(
                AnnotatorRow.token_hash == hash_token(token),
                or_(AnnotatorRow.token_expires_at.is_(None), AnnotatorRow.token_expires_at > now))
            ).scalar_one_or_none()

    @retry_conflicts
    def start_session(self, annotator_id: str, ttl: float = SESSION_TTL) -> tuple[str, float]:
        """A new session for this person: ``(secret for the cookie, expiry time)``.

        The session never outlives the person's invite.
        """
        secret = secrets.token_urlsafe(32)
        now = time.time()
        with self.session() as s, s.begin():
            ann = s.get(AnnotatorRow, annotator_id)
            if ann is None or ann.withdrawn_at is not None:
                raise ValueError(f"annotator {annotator_id!r} is unknown or withdrawn; no session")
            expires = now + ttl
            if ann.token_expires_at is not None:
                expires = min(expires, ann.token_expires_at)
            s.add(SessionRow(id=hash_token(secret), annotator_id=annotator_id, created_at=now, expires_at=expires))
        return secret, expires

    def annotator_by_session(self, secret: str, now: float | None = None) -> AnnotatorRow | None:
        """The person signed in with this cookie secret, if the session is live and they have not withdrawn."""
        now = time.time() if now is None else now
        with self.session() as s:
            return s.execute(select(AnnotatorRow).join(SessionRow, SessionRow.annotator_id == AnnotatorRow.id).where(
                SessionRow.id == hash_token(secret), SessionRow.ended_at.is_(None), SessionRow.expires_at > now,
                AnnotatorRow.withdrawn_at.is_(None))).scalar_one_or_none()

    def credential_holder(self, kind: str, secret: str) -> tuple[Holder | None, int]:
        """Who a credential (``kind`` "token": an invite token, "session": a cookie secret) belongs to, if live,
        and the cache epoch this answer belongs to (see :mod:`rlhf_gym.store.access`).

        Kept in :attr:`access` and dropped there when a revocation, logout or withdrawal is audited;
        the caller runs the generation check (``access.refresh``) when it needs one.
        """
        found, epoch = self.credential_holders([(kind, secret)])
        return found.get((kind, hash_token(secret))), epoch

    def credential_holders(self, creds: Sequence[tuple[str, str]]) -> tuple[dict[tuple[str, str], Holder], int]:
        """:meth:`credential_holder` for many credentials at once: ``{(kind, secret hash): holder}`` of the live
        ones and the epoch; those not in memory are read with one statement per kind (the web app's
        resolver hands over every credential that arrived while the previous lookup ran)."""
        now = time.time()
        epoch = self.access.epoch  # taken first: a change observed meanwhile moves it, and the entries are dropped
        out: dict[tuple[str, str], Holder] = {}
        todo: dict[str, set[str]] = {"session": set(), "token": set()}
        for kind, secret in creds:
            key = (kind, hash_token(secret))
            hit = self.access.holder(kind, key[1], now)
            if hit is not None:
                out[key] = hit
            else:
                todo["session" if kind == "session" else "token"].add(key[1])
        if not (todo["session"] or todo["token"]):
            return out, epoch
        with self.session() as s:
            if todo["session"]:
                for r in s.execute(select(SessionRow.id, AnnotatorRow.id, AnnotatorRow.kind, AnnotatorRow.withdrawn_at,
                                          SessionRow.expires_at).join(SessionRow, SessionRow.annotator_id == AnnotatorRow.id)
                                   .where(SessionRow.id.in_(todo["session"]), SessionRow.ended_at.is_(None),
                                          SessionRow.expires_at > now, AnnotatorRow.withdrawn_at.is_(None))):
                    out[("session", r[0])] = Holder(r[1], r[2], r[3] is not None, r[4])
            if todo["token"]:
                for r in s.execute(select(AnnotatorRow.token_hash, AnnotatorRow.id, AnnotatorRow.kind,
                                          AnnotatorRow.withdrawn_at, AnnotatorRow.token_expires_at).where(
                        AnnotatorRow.token_hash.in_(todo["token"]),
                        or_(AnnotatorRow.token_expires_at.is_(None), AnnotatorRow.token_expires_at > now))):
                    out[("token", r[0])] = Holder(r[1], r[2], r[3] is not None, r[4])
        for (kind, key), h in out.items():
            if key in todo["session" if kind == "session" else "token"]:
                self.access.put_holder(kind, key, h, epoch)  # unknown credentials are not cached (no memory growth)
        return out, epoch

    @retry_conflicts
    def end_sessions(self, annotator_id: str, actor: str, reason: str = "logout") -> int:
        """End every live session of this person (all browsers); audited. Returns how many ended."""
        with self.session() as s, s.begin():
            n = _end_sessions(s, annotator_id)
            audit.append(s, actor, "session.end", {"annotator": annotator_id, "sessions": n, "reason": reason})
        self.access.forget(annotator_id)
        return n

    @retry_conflicts
    def revoke_invite(self, annotator_id: str, actor: str = "admin", reason: str = "") -> int:
        """Make this person's invite token fail from now on and end their sessions; audited."""
        with self.session() as s, s.begin():
            ann = s.get(AnnotatorRow, annotator_id)
            if ann is None:
                raise UnknownAnnotator(annotator_id)
            had = ann.token_hash is not None
            ann.token_hash = None
            n = _end_sessions(s, annotator_id)
            audit.append(s, actor, "invite.revoke", {"annotator": annotator_id, "had_token": had, "sessions": n,
                                                     "reason": reason})
        self.access.forget(annotator_id)
        return n

    @retry_conflicts
    def reissue_invite(self, annotator_id: str, ttl: float | None, actor: str = "admin") -> str:
        """A fresh invite token for an existing person (the old one stops working); audited."""
        token = secrets.token_urlsafe(24)
        with self.session() as s, s.begin():
            ann = s.get(AnnotatorRow, annotator_id)
            if ann is None or ann.withdrawn_at is not None:
                raise StoreError(f"annotator {annotator_id!r} is unknown or has withdrawn; no new invite")
            ann.token_hash = hash_token(token)
            ann.token_expires_at = None if ttl is None else time.time() + ttl
            audit.append(s, actor, "invite.reissue", {"annotator": annotator_id,
                                                      "expires_at": ann.token_expires_at})
        self.access.forget(annotator_id)
        return token


def _end_sessions(s: Session, annotator_id: str) -> int:
    res = s.execute(update(SessionRow).where(SessionRow.annotator_id == annotator_id, SessionRow.ended_at.is_(None))
                    .values(ended_at=time.time()))
    return int(res.rowcount or 0)
