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
import threading
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

from rlhf_gym.store import FeedbackStore
from rlhf_gym.web.guard import COOKIE

__all__ = ["COOKIE", "Annotator", "TokenCache", "bearer", "credential", "require_admin", "require_annotator"]
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
    """The annotator of an invite token (Bearer header), unless expired or revoked."""
    if len(token) > MAX_TOKEN_LEN:
        return None
    row = store.annotator_by_token(token)
    if row is None:
        return None
    return Annotator(row.id, row.kind, row.withdrawn_at is not None)


def lookup_session(store: FeedbackStore, secret: str) -> Annotator | None:
    """The annotator signed in with this session cookie, if the session is live."""
    if len(secret) > MAX_TOKEN_LEN:
        return None
    row = store.annotator_by_session(secret)
    if row is None:
        return None
    return Annotator(row.id, row.kind, row.withdrawn_at is not None)


class TokenCache:
    """Credential -> annotator lookups kept for a few seconds, so a busy page does not hit the store each time.

    Keys are ``("token", invite token)`` or ``("session", cookie secret)``. Logging out or withdrawing
    through this process drops that person's entries at once; another worker process notices within
    ``ttl`` seconds (the store itself refuses labels from a withdrawn person in any case).
    """

    def __init__(self, store: FeedbackStore, ttl: float = 5.0, size: int = 4096) -> None:
        self.store, self.ttl, self.size = store, ttl, size
        self._d: dict[tuple[str, str], tuple[float, Annotator | None]] = {}
        self._lock = threading.Lock()

    def get(self, token: str, kind: str = "token") -> Annotator | None:
        now = time.monotonic()
        key = (kind, token)
        with self._lock:
            hit = self._d.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        ann = (lookup_session if kind == "session" else lookup_annotator)(self.store, token)
        with self._lock:
            if len(self._d) >= self.size:
                self._d.clear()
            if ann is not None:  # unknown credentials are not cached (no memory growth from guessing)
                self._d[key] = (now, ann)
            else:
                self._d.pop(key, None)
        return ann

    def peek(self, token: str, kind: str = "token") -> Annotator | None:
        """The cached annotator of a credential seen in the last ``ttl`` seconds, without asking the store."""
        with self._lock:
            hit = self._d.get((kind, token))
        return hit[1] if hit is not None and time.monotonic() - hit[0] < self.ttl else None

    def forget(self, annotator_id: str) -> None:
        """Drop every cached credential of this person (after logout, withdrawal or a revoked invite)."""
        with self._lock:
            for k in [k for k, (_t, a) in self._d.items() if a is not None and a.id == annotator_id]:
                del self._d[k]

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


def credential(request: Request) -> tuple[str, str] | None:
    """``("token", invite token)`` from the Authorization header, else ``("session", secret)`` from the cookie."""
    tok = bearer(request)
    if tok:
        return "token", tok
    sid = request.cookies.get(COOKIE)
    return ("session", sid) if sid else None


def require_annotator(request: Request, store: FeedbackStore, admin_token: str,
                      cache: TokenCache | None = None) -> Annotator:
    """The annotator of this request, or 401/403 with a message saying what is missing."""
    cred = credential(request)
    if cred is None:
        raise HTTPException(401, "missing token: open your invite link, or send 'Authorization: Bearer <token>'")
    kind, token = cred
    if is_admin_token(token, admin_token):
        raise HTTPException(403, "the admin token cannot give labels; use an annotator token")
    if cache is not None:
        ann = cache.get(token, kind)
    else:
        ann = (lookup_session if kind == "session" else lookup_annotator)(store, token)
    if ann is None:
        if kind == "session":
            raise HTTPException(401, "your session has ended (logged out, withdrawn or expired): open your invite "
                                     "link again")
        raise HTTPException(401, "unknown, expired or revoked annotator token")
    return ann


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
