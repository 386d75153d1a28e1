"""The HTML pages: the invite link (token -> session cookie), the label pages and the admin shell."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rlhf_gym.web import auth
from rlhf_gym.web.service import WebApp


def page(name: str) -> str:
    """The text of one static page."""
    return resources.files("rlhf_gym.web").joinpath("static", name).read_text(encoding="utf-8")


def build(web: WebApp, secure_cookie: bool = False) -> APIRouter:
    """Routes of the pages; the invite link starts a server-side session."""
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request, token: str | None = None) -> Response:
        if token is not None:
            ann = web.token_cache.get(token)
            if ann is None or ann.withdrawn:
                return HTMLResponse("<h1>Invite link not valid</h1><p>This invite is unknown, expired or was "
                                    "revoked. Ask the project owner for a new invite link.</p>", status_code=401)
            # The cookie holds a fresh session secret, never the invite token (logout can end it).
            secret, expires = web.store.start_session(ann.id)
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(auth.COOKIE, secret, httponly=True, samesite="strict", secure=secure_cookie,
                            max_age=max(1, int(expires - time.time())))
            return resp
        return HTMLResponse(page("index.html"))

    def page_route(name: str) -> Any:
        def show() -> HTMLResponse:
            return HTMLResponse(page(f"{name}.html"))

        return show

    for name in ("preference", "evaluative", "demo", "tradeoff", "dagger"):
        router.add_api_route(f"/{name}", page_route(name), methods=["GET"], response_class=HTMLResponse,
                             include_in_schema=False)

    @router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    def admin_page() -> HTMLResponse:
        # The shell holds no data: it asks for the admin token and fetches the report with it as a header.
        return HTMLResponse(page("admin.html"))

    return router
