"""The annotator API: who am I, consent, withdrawal, logout, open queries, clips, frames, labels, demos.

``/api/queries?kind=action`` lists DAgger's "which action here?" questions and ``/api/frames/{id}`` draws
their state (:mod:`rlhf_gym.web.action_queries`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from rlhf_gym.types import ActionQuery, StepQuery
from rlhf_gym.web import auth
from rlhf_gym.web.bodies import ActionIn, ConsentIn, FeedbackIn, WithdrawIn
from rlhf_gym.web.service import WebApp


async def annotator_dep(request: Request) -> auth.Annotator:
    """The annotator making the request (401/403 otherwise), checked against every change audited before it came."""
    web: WebApp = request.app.state.web
    return await run_in_threadpool(web.annotator, request, time.monotonic())


#: route parameter type: the annotator making the request (401/403 otherwise).
AnnotatorDep = Annotated[auth.Annotator, Depends(annotator_dep)]


def build(web: WebApp) -> APIRouter:
    """Routes a person's pages call (JSON)."""
    router = APIRouter()

    @router.get("/api/me")
    def me(ann: AnnotatorDep) -> dict[str, Any]:
        pol = web.policy
        agreed = web.store.has_consent(ann.id, pol.consent_version)
        return {"annotator_id": ann.id, "withdrawn": ann.withdrawn,
                "consent": {"version": pol.consent_version, "purpose": pol.purpose, "text": pol.consent_text,
                            "agreed": agreed, "needed": ann.kind == "human" and not agreed},
                "progress": web.progress(ann.id)}

    @router.post("/api/consent")
    def consent(body: ConsentIn, ann: AnnotatorDep) -> dict[str, Any]:
        pol = web.policy
        if ann.withdrawn:
            raise HTTPException(403, f"annotator {ann.id!r} has withdrawn")
        if body.version != pol.consent_version:
            raise HTTPException(409, f"the consent text changed (now version {pol.consent_version!r}, you saw "
                                     f"{body.version!r}); reload the page and read it again")
        with web.write_lock:
            web.store.record_consent(ann.id, pol.consent_version, pol.purpose + "\n" + pol.consent_text, body.agree)
        return {"annotator_id": ann.id, "version": pol.consent_version, "agreed": body.agree}

    @router.post("/api/withdraw")
    def withdraw(body: WithdrawIn, ann: AnnotatorDep) -> JSONResponse:
        if not body.confirm:
            raise HTTPException(422, "send {\"confirm\": true} to withdraw")
        with web.write_lock:
            out = web.store.withdraw_annotator(ann.id, actor=ann.id, reason="withdrawn by the annotator (web)")
        web.token_cache.forget(ann.id)  # their invite is revoked and every session ended
        resp = JSONResponse({"annotator_id": ann.id, "labels_withdrawn": out["labels_withdrawn"],
                             "withdrawn": True})
        resp.delete_cookie(auth.COOKIE)
        return resp

    @router.post("/api/logout")
    def logout(request: Request) -> JSONResponse:
        """End every session of the signed-in person (all their browsers) and clear this cookie."""
        ended = 0
        try:
            ann = web.annotator(request)
        except HTTPException:
            ann = None
        if ann is not None:
            with web.write_lock:
                ended = web.store.end_sessions(ann.id, actor=ann.id, reason="logout (web)")
            web.token_cache.forget(ann.id)
        resp = JSONResponse({"ok": True, "sessions_ended": ended})
        resp.delete_cookie(auth.COOKIE)
        return resp

    @router.get("/api/queries")
    def queries(ann: AnnotatorDep, kind: Literal["pair", "step", "demo", "action"] = "pair",
                limit: int = Query(5, ge=1, le=200)) -> dict[str, Any]:
        rows = web.open_queries(ann.id, kind, limit)
        envs = {rid: web.env_of_run(rid) for rid in {r.run_id for r in rows}} if kind in ("step", "action") else {}
        return {"queries": [web.describe(r, envs.get(r.run_id)) for r in rows], "progress": web.progress(ann.id)}

    @router.get("/api/clips/{query_id}/{side}", response_class=Response,
             responses={200: {"content": {"image/webp": {}}}})
    async def clip(query_id: str, side: Literal["left", "right"], ann: AnnotatorDep) -> Response:
        # Served from memory once rendered (who may see it is kept with the bytes); else render/read.
        hit = web.clip_mem.get((query_id, side))
        if hit is None:
            hit = await run_in_threadpool(web.load_clip, ann, query_id, side)
        data, owner = hit
        if owner is not None and owner != ann.id:
            raise HTTPException(403, f"query {query_id!r} is not assigned to you")
        return Response(data, media_type="image/webp", headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/api/frames/{query_id}", response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
    def frame(query_id: str, ann: AnnotatorDep) -> FileResponse:
        sq = web.visible_query(ann, query_id)
        q = sq.query
        if isinstance(q, ActionQuery):  # DAgger's state: replayed from the episode's seed and actions
            path = web.clips.action_frame(q, q.env_id or web.env_of_run(sq.run_id))
            return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
        if not isinstance(q, StepQuery):
            raise HTTPException(400, f"query {query_id!r} is a {q.kind} query, not an evaluative step")
        path = web.clips.step_frame(q, web.env_of_run(sq.run_id))
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @router.post("/api/feedback", status_code=201)
    async def feedback(request: Request, body: FeedbackIn,
                       progress: bool = Query(False, description="also return my progress counter")) -> JSONResponse:
        # Who is asking and whether the query may be answered come from memory (else from the store: the
        # credential in a batched lookup, the query in a pool thread); the group-commit writer then re-checks everything under the database's write lock
        # and stores the batch in one transaction. The answer goes out once this label is committed or refused.
        ann, cred, fb = await web.label_checked(request, body)
        res = await asyncio.wrap_future(web.labels.put(fb, body.client_key, cred))
        code, out = web.label_response(fb, res)
        if progress:
            out["progress"] = await run_in_threadpool(web.progress, ann.id)
        return JSONResponse(out, status_code=code)

    @router.post("/api/demo/{query_id}/start")
    def demo_start(query_id: str, ann: AnnotatorDep) -> dict[str, Any]:
        return web.demo_start(ann, query_id)

    @router.post("/api/demo/{query_id}/step")
    def demo_step(query_id: str, body: ActionIn, ann: AnnotatorDep) -> dict[str, Any]:
        return web.demo_step(ann, query_id, body.action)

    @router.post("/api/demo/{query_id}/finish")
    def demo_finish(query_id: str, ann: AnnotatorDep) -> dict[str, Any]:
        return web.demo_finish(ann, query_id)

    return router
