"""Who is asking: annotator tokens (header or invite-link cookie) and the separate admin token.

Annotator tokens are stored hashed (``store.annotator_by_token`` compares SHA-256 digests); the
admin token is given to the server at start and compared in constant time. Admin routes take the
admin token in the ``Authorization`` header only (never a cookie), so a browser page cannot be
tricked into making admin calls; annotator pages use an ``HttpOnly``, ``SameSite=Strict`` cookie
set when the invite link is opened.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

from rlhf_gym.store import FeedbackStore
from rlhf_gym.web.guard import COOKIE

__all__ = ["COOKIE", "Annotator", "TokenCache", "bearer", "require_admin", "require_annotator"]
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
    if len(token) > MAX_TOKEN_LEN:
        return None
    row = store.annotator_by_token(token)
    if row is None:
        return None
    return Annotator(row.id, row.kind, row.withdrawn_at is not None)


class TokenCache:
    """Token -> annotator lookups kept for a few seconds, so a busy page does not hit the store each time.

    Only a speed-up: the store itself refuses labels from a withdrawn person, and withdrawing through
    the app clears the cache.
    """

    def __init__(self, store: FeedbackStore, ttl: float = 5.0, size: int = 4096) -> None:
        self.store, self.ttl, self.size = store, ttl, size
        self._d: dict[str, tuple[float, Annotator | None]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Annotator | None:
        now = time.monotonic()
        with self._lock:
            hit = self._d.get(token)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        ann = lookup_annotator(self.store, token)
        with self._lock:
            if len(self._d) >= self.size:
                self._d.clear()
            if ann is not None:  # unknown tokens are not cached (no memory growth from guessing)
                self._d[token] = (now, ann)
        return ann

    def peek(self, token: str) -> Annotator | None:
        """The cached annotator of a token seen in the last ``ttl`` seconds, without asking the store."""
        with self._lock:
            hit = self._d.get(token)
        return hit[1] if hit is not None and time.monotonic() - hit[0] < self.ttl else None

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


def require_annotator(request: Request, store: FeedbackStore, admin_token: str,
                      cache: TokenCache | None = None) -> Annotator:
    """The annotator of this request, or 401/403 with a message saying what is missing."""
    token = bearer(request) or request.cookies.get(COOKIE)
    if not token:
        raise HTTPException(401, "missing token: open your invite link, or send 'Authorization: Bearer <token>'")
    if is_admin_token(token, admin_token):
        raise HTTPException(403, "the admin token cannot give labels; use an annotator token")
    ann = cache.get(token) if cache is not None else lookup_annotator(store, token)
    if ann is None:
        raise HTTPException(401, "unknown or revoked annotator token")
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
