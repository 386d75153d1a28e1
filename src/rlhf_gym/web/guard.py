"""What every request passes before a route sees it: URL, body size, origin; and the security headers.

One ASGI middleware, so nothing is parsed or buffered before these checks:

- a NUL character in the path or query string is refused (400): no backend stores it;
- the body limit is decided from the headers alone: the large admin limit only when the request
  carries the admin token, the small one for everything else (annotators and anonymous requests),
  and a declared ``Content-Length`` over it is refused (413) before a byte is read; a body without
  one is read in chunks and refused as soon as it passes the limit;
- a state-changing request (POST, PUT, PATCH, DELETE) authenticated by the session cookie must come
  from the app's own pages: its ``Origin`` (or, without one, ``Sec-Fetch-Site``) must name this
  server, else 403. ``SameSite=Strict`` alone does not stop another port on the same host;
- every response carries a Content-Security-Policy (scripts only from this server, no framing),
  ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``
  (invite links carry a token in the URL; it must not leak to other sites).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

#: largest request body an annotator (or anyone without the admin token) may send; labels are tiny.
MAX_BODY = 64 * 1024
#: largest request body with the admin token (batches of queries with their observations).
MAX_ADMIN_BODY = 16 * 1024 * 1024
#: the session cookie's name (see :mod:`rlhf_gym.web.auth`).
COOKIE = "rlhf_gym_session"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Guard:
    """ASGI middleware doing the checks above; ``allowed_origins`` adds origins (``https://host``) to accept."""

    def __init__(self, app: Any, admin_token: str, limit: int = MAX_BODY, admin_limit: int = MAX_ADMIN_BODY,
                 allowed_origins: Iterable[str] = ()) -> None:
        self.app, self.admin_token = app, admin_token
        self.limit, self.admin_limit = limit, admin_limit
        self.allowed = {urlsplit(o).netloc.lower() for o in allowed_origins if o}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secure(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                have = {k.lower() for k, _ in msg.get("headers", [])}
                msg = {**msg, "headers": [*msg.get("headers", []),
                                          *[(k, v) for k, v in SECURITY_HEADERS if k not in have]]}
            await send(msg)

        headers: dict[bytes, bytes] = {}
        for k, v in scope.get("headers", []):
            headers.setdefault(k.lower(), v)
        qs = scope.get("query_string", b"")
        if "\x00" in scope.get("path", "") or b"\x00" in qs or b"%00" in qs.lower():
            await _reply(send_secure, 400, "the URL contains a NUL character (%00); nothing was read")
            return
        method = scope.get("method", "GET").upper()
        if method not in _SAFE_METHODS and b"authorization" not in headers and _has_cookie(headers):
            why = self._cross_origin(headers)
            if why:
                await _reply(send_secure, 403, f"refused a cookie-authenticated {method} {why}; "
                                               "labels are taken only from this app's own pages")
                return
        limit = self.admin_limit if self._is_admin(headers) else self.limit
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send_secure, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send_secure, limit)
                return
            chunks.append(chunk)
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_secure)

    def _is_admin(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"")
        scheme, _, tok = auth.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(tok.strip(), self.admin_token.encode())

    def _cross_origin(self, headers: dict[bytes, bytes]) -> str | None:
        """Why this request is not from our own pages, or None when it is."""
        host = headers.get(b"host", b"").decode("latin-1").lower()
        origin = headers.get(b"origin")
        if origin is not None:
            o = origin.decode("latin-1")
            netloc = urlsplit(o).netloc.lower() if o != "null" else ""
            if netloc and (netloc == host or netloc in self.allowed):
                return None
            return f"from origin {o!r} (this server is {host!r})"
        site = headers.get(b"sec-fetch-site")
        if site is not None:
            return None if site in (b"same-origin", b"none") else f"from a {site.decode('latin-1')} page"
        return "without an Origin header"


def _has_cookie(headers: dict[bytes, bytes]) -> bool:
    return COOKIE.encode() + b"=" in headers.get(b"cookie", b"")


async def _reply(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Any, limit: int) -> None:
    await _reply(send, 413, f"request body too large (limit {limit} bytes)")
