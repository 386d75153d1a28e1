"""The admin API (admin token in the Authorization header): queries in, answers out, runs, reports."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from rlhf_gym.web.bodies import PostQueriesIn
from rlhf_gym.web.service import WebApp


def admin_dep(request: Request) -> None:
    """Pass only with the admin token (401/403 otherwise)."""
    request.app.state.web.admin(request)


def build(web: WebApp) -> APIRouter:
    """Routes a training run and the owner call."""
    router = APIRouter()

    @router.post("/api/admin/queries", dependencies=[Depends(admin_dep)])
    def admin_queries(body: PostQueriesIn) -> dict[str, Any]:
        return web.post_queries(body)

    @router.get("/api/admin/answers", dependencies=[Depends(admin_dep)])
    def admin_answers(run_id: str | None = Query(None, max_length=64), since: int = Query(0, ge=0, le=2**62),
                      limit: int = Query(500, ge=1, le=5000)) -> dict[str, Any]:
        return web.answers(run_id, since, limit)

    @router.get("/api/admin/runs/{run_id}", dependencies=[Depends(admin_dep)])
    def admin_run(run_id: str) -> dict[str, Any]:
        return web.run_status(run_id)

    @router.post("/api/admin/runs/{run_id}/finish", dependencies=[Depends(admin_dep)])
    def admin_finish(run_id: str) -> dict[str, Any]:
        return web.finish_run(run_id)

    @router.get("/api/admin/report", dependencies=[Depends(admin_dep)])
    def admin_report() -> dict[str, Any]:
        """Agreement and bias report of every annotator (see rlhf_gym.governance.report)."""
        from rlhf_gym.governance.report import annotator_report

        return annotator_report(web.store)

    @router.get("/api/admin/report.html", response_class=HTMLResponse, dependencies=[Depends(admin_dep)],
             include_in_schema=False)
    def admin_report_html() -> HTMLResponse:
        from rlhf_gym.governance.admin import render_admin_html
        from rlhf_gym.governance.report import annotator_report

        return HTMLResponse(render_admin_html(annotator_report(web.store)))

    return router
