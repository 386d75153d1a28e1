"""Who is asking: annotator tokens (header or invite-link cookie) and the separate admin token.

Invite tokens are stored hashed (``store.annotator_by_token`` compares SHA-256 digests) and may
expire or be revoked. Opening the invite link starts a server-side session: the ``HttpOnly``,
``SameSite=Strict`` cookie holds that session's random secret, never the invite token, so logging
out or withdrawing ends it (every session of the person at once). Scripts may send the invite token
as ``Authorization: Bearer``. The admin token is given to the server at start, compared in constant
time, and taken in the ``Authorization`` header only (never a cookie), so a browser page cannot be
tricked into making admin calls.
"""

from __future__ import annotations

import hmac
import queue
import time
from concurrent.futures import Future
from dataclasses import dataclass

from fastapi import HTTPException, Request

from rlhf_gym.store import FeedbackStore, hash_token
from rlhf_gym.store.batch import Credential
from rlhf_gym.web.batching import start_drainer
from rlhf_gym.web.guard import COOKIE

__all__ = ["COOKIE", "Annotator", "CredentialResolver", "TokenCache", "bearer", "credential", "require_admin", "require_annotator",
           "require_sender"]
#: longest token accepted; anything longer is refused before hashing.
MAX_TOKEN_LEN = 256


@dataclass(frozen=True)
class Annotator:
    """The pseudonymous person behind a request."""

    id: str
    kind: str
    withdrawn: bool


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    h = request.headers.get("authorization")
    if not h:
        return None
    scheme, _, tok = h.partition(" ")
    if scheme.lower() != "bearer" or not tok.strip():
        raise HTTPException(401, "malformed Authorization header: expected 'Bearer <token>'")
    return tok.strip()


def is_admin_token(token: str | None, admin_token: str) -> bool:
    return bool(token) and hmac.compare_digest(token.encode(), admin_token.encode())  # type: ignore[union-attr]


def lookup_annotator(store: FeedbackStore, token: str) -> Annotator | None:
    """The annotator of an invite token (Bearer header), unless expired or revoked (read from the store)."""
    if len(token) > MAX_TOKEN_LEN:
        return None
    row = store.annotator_by_token(token)
    if row is None:
        return None
    return Annotator(row.id, row.kind, row.withdrawn_at is not None)


def lookup_session(store: FeedbackStore, secret: str) -> Annotator | None:
    """The annotator signed in with this session cookie, if the session is live (read from the store)."""
    if len(secret) > MAX_TOKEN_LEN:
        return None
    row = store.annotator_by_session(secret)
    if row is None:
        return None
    return Annotator(row.id, row.kind, row.withdrawn_at is not None)


class TokenCache:
    """Credential -> annotator, kept in the store's access cache and checked against the audit log.

    A credential seen before is answered from memory as long as no logout, withdrawal, revocation or
    consent change has been audited since (by any process): :meth:`get` first runs the store's
    generation check (:meth:`~rlhf_gym.store.access.AccessCache.refresh`, one cheap statement,
    coalesced across concurrent requests), so a credential ended before the request arrived is
    refused at once, in every worker. The label route skips that check (``fresh=False``): the label
    writer re-checks the credential under the database's write lock instead (see
    :class:`~rlhf_gym.store.batch.Credential`). ``ttl`` bounds how long any entry is kept regardless.
    """

    def __init__(self, store: FeedbackStore) -> None:
        self.store = store

    @property
    def ttl(self) -> float:
        return self.store.access.ttl

    @ttl.setter
    def ttl(self, v: float) -> None:
        self.store.access.ttl = v

    def vouch(self, token: str, kind: str = "token", fresh: bool = True,
              arrived: float | None = None) -> tuple[Annotator | None, Credential | None]:
        """The annotator of a credential and the :class:`Credential` the label writer re-checks."""
        if len(token) > MAX_TOKEN_LEN:
            return None, None
        if fresh:
            self.store.access.refresh(self.store.engine.connect, time.monotonic() if arrived is None else arrived)
        h, epoch = self.store.credential_holder(kind, token)
        if h is None:
            return None, None
        return Annotator(h.id, h.kind, h.withdrawn), Credential(kind, hash_token(token), epoch)

    def vouch_cached(self, token: str, kind: str = "token") -> tuple[Annotator, Credential] | None:
        """:meth:`vouch` without a generation check, answered from memory only (None: not in memory)."""
        if len(token) > MAX_TOKEN_LEN:
            return None
        key = hash_token(token)
        epoch = self.store.access.epoch  # first: a change observed meanwhile makes the writer re-check
        h = self.store.access.holder(kind, key, time.time())
        if h is None:
            return None
        return Annotator(h.id, h.kind, h.withdrawn), Credential(kind, key, epoch)

    def get(self, token: str, kind: str = "token", fresh: bool = True, arrived: float | None = None) -> Annotator | None:
        """The annotator of an invite token (``kind="token"``) or session secret (``"session"``), or None."""
        return self.vouch(token, kind, fresh, arrived)[0]

    def peek(self, token: str, kind: str = "token") -> Annotator | None:
        """The cached annotator of a credential, without asking the store (no generation check)."""
        h = self.store.access.holder(kind, hash_token(token), time.time())
        return None if h is None else Annotator(h.id, h.kind, h.withdrawn)

    def forget(self, annotator_id: str) -> None:
        """Drop every cached credential of this person (after logout, withdrawal or a revoked invite)."""
        self.store.access.forget(annotator_id)

    def clear(self) -> None:
        self.store.access.clear()


class CredentialResolver:
    """Credentials not in memory, looked up in batches by one thread (as the label writer batches writes).

    When many people arrive at once (a class opening their invite links), each first request would
    otherwise take a pool thread and a connection for one lookup; here every credential queued while
    the previous lookup ran is read with one statement per kind. :meth:`lookup` gives a future of
    ``(Annotator, Credential)``, or None for an unknown, expired or ended credential (the caller then
    takes the ordinary path, which says which). Like :meth:`TokenCache.vouch` with ``fresh=False``: the
    label writer re-checks the credential under the write lock when anything was revoked meanwhile.
    """

    def __init__(self, store: FeedbackStore, max_batch: int = 512) -> None:
        self.store, self.max_batch = store, max_batch
        self._q: queue.SimpleQueue[tuple[str, str, Future]] = queue.SimpleQueue()
        self.batches = 0
        start_drainer("rlhf-credential-resolver", self._q, max_batch, self._resolve)

    def lookup(self, kind: str, secret: str) -> Future:
        fut: Future = Future()
        if len(secret) > MAX_TOKEN_LEN:
            fut.set_result(None)
        else:
            self._q.put((kind, secret, fut))
        return fut

    def _resolve(self, batch: list[tuple[str, str, Future]]) -> None:
        try:
            found, epoch = self.store.credential_holders([(k, s) for k, s, _f in batch])
        except Exception as e:  # the database failed: each caller takes the ordinary path and reports it
            for _k, _s, fut in batch:
                fut.set_exception(e)
            return
        self.batches += 1
        for kind, secret, fut in batch:
            key = hash_token(secret)
            h = found.get((kind, key))
            fut.set_result(None if h is None else (Annotator(h.id, h.kind, h.withdrawn), Credential(kind, key, epoch)))


def credential(request: Request) -> tuple[str, str] | None:
    """``("token", invite token)`` from the Authorization header, else ``("session", secret)`` from the cookie."""
    tok = bearer(request)
    if tok:
        return "token", tok
    sid = request.cookies.get(COOKIE)
    return ("session", sid) if sid else None


def require_annotator(request: Request, store: FeedbackStore, admin_token: str,
                      cache: TokenCache | None = None, fresh: bool = True,
                      arrived: float | None = None) -> Annotator:
    """The annotator of this request, or 401/403 with a message saying what is missing."""
    return require_sender(request, store, admin_token, cache, fresh, arrived)[0]


def require_sender(request: Request, store: FeedbackStore, admin_token: str, cache: TokenCache | None = None,
                   fresh: bool = True, arrived: float | None = None) -> tuple[Annotator, Credential | None]:
    """The annotator of this request and the credential they came with (for the label writer to re-check)."""
    cred = credential(request)
    if cred is None:
        raise HTTPException(401, "missing token: open your invite link, or send 'Authorization: Bearer <token>'")
    kind, token = cred
    if is_admin_token(token, admin_token):
        raise HTTPException(403, "the admin token cannot give labels; use an annotator token")
    via: Credential | None = None
    if cache is not None:
        ann, via = cache.vouch(token, kind, fresh, arrived)
    else:
        ann = (lookup_session if kind == "session" else lookup_annotator)(store, token)
    if ann is None:
        if kind == "session":
            raise HTTPException(401, "your session has ended (logged out, withdrawn or expired): open your invite "
                                     "link again")
        raise HTTPException(401, "unknown, expired or revoked annotator token")
    return ann, via


def require_admin(request: Request, store: FeedbackStore, admin_token: str, cache: TokenCache | None = None) -> None:
    """Pass only with the admin token in the Authorization header; annotator tokens get 403."""
    token = bearer(request)
    if not token:
        raise HTTPException(401, "missing admin token: send 'Authorization: Bearer <admin token>'")
    if is_admin_token(token, admin_token):
        return
    if (cache.get(token) if cache is not None else lookup_annotator(store, token)) is not None:
        raise HTTPException(403, "annotator tokens are not accepted on admin routes")
    raise HTTPException(401, "wrong admin token")
