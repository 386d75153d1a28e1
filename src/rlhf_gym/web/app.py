"""The annotation web app: pages for people, an API for them and an admin API for training runs.

Annotators are pseudonymous ids behind invite tokens (``rlhf-gym annotators invite`` prints a link
``URL/?token=...``; opening it starts a server-side session held in a cookie). Every label is
committed to the store (SQLite WAL with ``synchronous=FULL``, or PostgreSQL) before the 2xx answer
goes out, so an acknowledged label survives a killed server. Bad input gets a 4xx naming what was
wrong and stores nothing.

Routes (all JSON unless said otherwise)::

    GET  /?token=T                 invite link: token -> session cookie, redirect to /
    GET  /, /preference, /evaluative, /demo, /tradeoff, /dagger, /admin     pages (HTML)
    GET  /api/me                   who am I, consent state, progress
    POST /api/consent              {"agree": bool, "version": str}
    POST /api/withdraw             {"confirm": true}: withdraw myself and all my labels
    POST /api/logout               end every session of mine
    GET  /api/queries?kind=K       my open queries (assigned to me or to nobody, not yet answered by me);
                                   K = pair, step, demo or action (DAgger: which action here?)
    GET  /api/clips/{qid}/{side}   animated WebP of a pair's left/right clip
    GET  /api/frames/{qid}         PNG of an evaluative step, or of a DAgger state (replayed from seed and actions)
    GET  /api/outcomes             my open trade-off questions; /api/outcomes/{qid}/clip/{side}: WebP
    POST /api/feedback             {"query_id", "value", "client_key", "step"?, "shown_at"?, "data"?}
                                   (action queries: value null, data {"action": a}; no data = skip)
    POST /api/demo/{qid}/start | /step {"action"} | /finish     play a demonstration
    POST /api/admin/queries        (admin) {"run_id", "env_id"?, "assigned_to"?, "queries": [...]}
    GET  /api/admin/answers        (admin) ?run_id=&since=&limit=  answers after a cursor
    GET  /api/admin/runs/{run_id}  (admin) counts;  POST .../finish  mark done and delete its clips
    GET  /api/admin/report(.html)  (admin) agreement and bias report

Layout: :mod:`~rlhf_gym.web.guard` (URL, body size, origin, security headers), :mod:`~rlhf_gym.web.auth`
(tokens and sessions), :mod:`~rlhf_gym.web.bodies` (request bodies), :mod:`~rlhf_gym.web.service`
(the logic, over store methods), ``routes_pages`` / ``routes_annotator`` / ``routes_admin`` (thin routes).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from rlhf_gym.governance.consent import FeedbackPolicy
from rlhf_gym.store import FeedbackStore
from rlhf_gym.web import routes_admin, routes_annotator, routes_outcomes, routes_pages
from rlhf_gym.web.guard import MAX_ADMIN_BODY, MAX_BODY, Guard
from rlhf_gym.web.service import WebApp

__all__ = ["MAX_ADMIN_BODY", "MAX_BODY", "WebApp", "create_app"]


def create_app(store: FeedbackStore, admin_token: str, clip_dir: str | Path = "clips",
               policy: FeedbackPolicy | None = None, secure_cookie: bool = False,
               allowed_origins: tuple[str, ...] = ()) -> FastAPI:
    """Build the FastAPI app over ``store``; ``admin_token`` guards the admin routes.

    ``allowed_origins`` names extra page origins (``https://label.example.org``) accepted on cookie
    POSTs, for a server behind a proxy that rewrites the Host header.
    """
    web = WebApp(store, admin_token, clip_dir, policy)
    # No Swagger UI page: it would load scripts from a CDN; the OpenAPI description itself is served.
    app = FastAPI(title="rlhf-gym annotation", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.web = web
    app.add_middleware(Guard, admin_token=admin_token, allowed_origins=allowed_origins)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable line per problem; the offending input is not echoed (it may not even be JSON-safe).
        errs = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                for e in exc.errors()]
        msg = "; ".join(f"{'.'.join(e['loc']) or 'request'}: {e['msg']}" for e in errs) or "invalid request"
        return JSONResponse({"detail": msg, "errors": errs}, status_code=422)

    app.mount("/static", StaticFiles(directory=str(resources.files("rlhf_gym.web").joinpath("static"))),
              name="static")
    app.include_router(routes_pages.build(web, secure_cookie))
    app.include_router(routes_annotator.build(web))
    app.include_router(routes_outcomes.build(web))
    app.include_router(routes_admin.build(web))

    @app.get("/api/health", include_in_schema=False)
    async def health() -> dict[str, Any]:
        # on the event loop (no pool thread, no store call): a load balancer's probe answers even when
        # every pool thread is busy
        return {"ok": True}

    return app
