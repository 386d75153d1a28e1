"""Who is asking: annotator tokens (header or invite-link cookie) and the separate admin token.

Annotator tokens are stored hashed (``store.annotator_by_token`` compares SHA-256 digests); the
admin token is given to the server at start and compared in constant time. Admin routes take the
admin token in the ``Authorization`` header only (never a cookie), so a browser page cannot be
tricked into making admin calls; annotator pages use an ``HttpOnly``, ``SameSite=Strict`` cookie
set when the invite link is opened.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request

from rlhf_gym.store import FeedbackStore

COOKIE = "rlhf_gym_token"
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


def require_annotator(request: Request, store: FeedbackStore, admin_token: str) -> Annotator:
    """The annotator of this request, or 401/403 with a message saying what is missing."""
    token = bearer(request) or request.cookies.get(COOKIE)
    if not token:
        raise HTTPException(401, "missing token: open your invite link, or send 'Authorization: Bearer <token>'")
    if is_admin_token(token, admin_token):
        raise HTTPException(403, "the admin token cannot give labels; use an annotator token")
    ann = lookup_annotator(store, token)
    if ann is None:
        raise HTTPException(401, "unknown or revoked annotator token")
    return ann


def require_admin(request: Request, store: FeedbackStore, admin_token: str) -> None:
    """Pass only with the admin token in the Authorization header; annotator tokens get 403."""
    token = bearer(request)
    if not token:
        raise HTTPException(401, "missing admin token: send 'Authorization: Bearer <admin token>'")
    if is_admin_token(token, admin_token):
        return
    if lookup_annotator(store, token) is not None:
        raise HTTPException(403, "annotator tokens are not accepted on admin routes")
    raise HTTPException(401, "wrong admin token")
