"""Routes of the trade-off page (``/tradeoff``): open outcome comparisons and their clips (JSON / WebP).

Answers are posted to ``/api/feedback`` like every other label; the logic is in :mod:`rlhf_gym.web.outcomes`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rlhf_gym.web import outcomes
from rlhf_gym.web.routes_annotator import AnnotatorDep
from rlhf_gym.web.service import WebApp


def build(web: WebApp) -> APIRouter:
    """``GET /api/outcomes`` (my open outcome queries) and ``GET /api/outcomes/{id}/clip/{side}``."""
    router = APIRouter()

    @router.get("/api/outcomes")
    def open_outcomes(ann: AnnotatorDep, limit: int = Query(5, ge=1, le=200)) -> dict[str, Any]:
        rows = web.open_queries(ann.id, "outcome", limit)
        envs = {rid: web.env_of_run(rid) for rid in {r.run_id for r in rows}}
        return {"queries": [outcomes.describe(r, envs.get(r.run_id)) for r in rows], "progress": web.progress(ann.id)}

    @router.get("/api/outcomes/{query_id}/clip/{side}", response_class=Response,
                responses={200: {"content": {"image/webp": {}}}})
    async def outcome_clip(query_id: str, side: Literal["left", "right"], ann: AnnotatorDep) -> Response:
        hit = web.clip_mem.get((query_id, f"outcome-{side}"))
        if hit is not None and hit[1] is not None and hit[1] != ann.id:
            hit = None  # someone else's: let the full check answer 403
        if hit is None:
            hit = await run_in_threadpool(outcomes.outcome_clip, web, ann, query_id, side)
        return Response(hit[0], media_type="image/webp", headers={"Cache-Control": "private, max-age=3600"})

    return router
