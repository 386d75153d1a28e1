"""The annotation web app: pages for people, an API for them and an admin API for training runs.

Annotators are pseudonymous ids behind tokens (``rlhf-gym annotators invite`` prints an invite link
``URL/?token=...``; opening it sets a cookie). Every label is committed to the store (SQLite WAL with
``synchronous=FULL``, or PostgreSQL) before the 2xx answer goes out, so an acknowledged label
survives a killed server. Bad input gets a 4xx naming what was wrong and stores nothing.

Routes (all JSON unless said otherwise)::

    GET  /?token=T                 invite link: token -> cookie, redirect to /
    GET  /, /preference, /evaluative, /demo     pages (HTML)
    GET  /api/me                   who am I, consent state, progress
    POST /api/consent              {"agree": bool, "version": str}
    POST /api/withdraw             {"confirm": true}: withdraw myself and all my labels
    GET  /api/queries?kind=K       my open queries (assigned to me or to nobody, not yet answered by me)
    GET  /api/clips/{qid}/{side}   animated WebP of a pair's left/right clip
    GET  /api/frames/{qid}         PNG of an evaluative step
    POST /api/feedback             {"query_id", "value", "client_key", "step"?, "shown_at"?, "data"?}
    POST /api/demo/{qid}/start | /step {"action"} | /finish     play a demonstration
    POST /api/admin/queries        (admin) {"run_id", "env_id"?, "assigned_to"?, "queries": [...]}
    GET  /api/admin/answers        (admin) ?run_id=&since=&limit=  answers after a cursor
    GET  /api/admin/runs/{run_id}  (admin) counts;  POST .../finish  mark done and delete its clips
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, or_, select, update
from starlette.concurrency import run_in_threadpool

from rlhf_gym.governance.consent import FeedbackPolicy, load_policy
from rlhf_gym.store import ConsentError, FeedbackStore, StoreError, UnsafeInputError
from rlhf_gym.store.jsonsafe import UnsafeValue, check_json, clean_json
from rlhf_gym.store.schema import ConsentRow, FeedbackRow, QueryRow, RunRow
from rlhf_gym.types import DemoQuery, Feedback, PairQuery, StepQuery
from rlhf_gym.types import Query as RQuery
from rlhf_gym.web import auth
from rlhf_gym.web.actions import action_meaning, demo_keys
from rlhf_gym.web.clips import CLIP_FPS, ClipCache, encode_png
from rlhf_gym.web.guard import MAX_ADMIN_BODY, MAX_BODY, Guard

__all__ = ["MAX_ADMIN_BODY", "MAX_BODY", "create_app"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

# -- request bodies ------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, raw: Any) -> Any:
        # NaN, Infinity, NUL and lone surrogates parse as JSON in Python but cannot be stored or served.
        try:
            check_json(raw, "body")
        except UnsafeValue as e:
            raise ValueError(f"{e.where.removeprefix('body.')}: {e.why}") from None
        return raw


class ConsentIn(_Body):
    agree: bool
    version: str = Field(min_length=1, max_length=64)


class WithdrawIn(_Body):
    confirm: bool


class FeedbackIn(_Body):
    query_id: str = Field(pattern=ID_PATTERN)
    value: float | None = Field(description="step: 1 good, 0 bad; pair: 1 left, 0 right, 0.5 equal; null = skip")
    client_key: str = Field(min_length=1, max_length=128, description="unique per answer; a resend is refused")
    step: int | None = Field(default=None, ge=0, le=10**9, description="step shown when the key was pressed")
    shown_at: float | None = Field(default=None, description="unix time the query was shown")
    data: dict[str, str | int | float | bool | None] | None = Field(default=None, max_length=16)

    @field_validator("value", "shown_at")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class ActionIn(_Body):
    action: int = Field(ge=0, le=1000)


class PostQueriesIn(_Body):
    run_id: str | None = Field(default=None, pattern=ID_PATTERN)
    env_id: str | None = Field(default=None, max_length=128, description="environment of step queries")
    assigned_to: str | None = Field(default=None, pattern=ID_PATTERN)
    queries: list[dict[str, Any]] = Field(max_length=5000)


# -- demonstrations in progress ------------------------------------------------------------------
@dataclass
class DemoSession:
    query: DemoQuery
    env: Any
    obs: list[Any]
    acts: list[int] = field(default_factory=list)
    rews: list[float] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    terminated: bool = False
    truncated: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def _frame_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


class _LRU:
    """A small thread-safe least-recently-used cache bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._d: OrderedDict[Any, tuple[bytes, Any]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bytes, Any] | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: Any, value: tuple[bytes, Any]) -> None:
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._size -= len(old[0])
            self._d[key] = value
            self._size += len(value[0])
            while self._size > self.max_bytes and len(self._d) > 1:
                _k, v = self._d.popitem(last=False)
                self._size -= len(v[0])

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._size = 0


class WebApp:
    """State behind the routes: the store, the clip cache, the write lock and demos in progress."""

    def __init__(self, store: FeedbackStore, admin_token: str, clip_dir: str | Path,
                 policy: FeedbackPolicy | None = None, max_demo_sessions: int = 100) -> None:
        if not admin_token or len(admin_token) < 8:
            raise ValueError("the admin token must be at least 8 characters")
        self.store = store
        self.admin_token = admin_token
        self.policy = policy or load_policy()
        self.store.consent_version = self.policy.consent_version
        self.clips = ClipCache(clip_dir)
        #: one writer at a time in this process: SQLite would otherwise refuse a second writer's
        #: read-then-write transaction, and the "already answered" check must be atomic.
        self.write_lock = threading.Lock()
        self.demos: OrderedDict[tuple[str, str], DemoSession] = OrderedDict()
        self.demos_lock = threading.Lock()
        self.max_demo_sessions = max_demo_sessions
        self._prerender_lock = threading.Lock()
        self.token_cache = auth.TokenCache(store)
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlhf-label-writer")
        #: (query id, side) -> (webp bytes, annotator it is assigned to or None), most recent last
        self.clip_mem = _LRU(max_bytes=64 * 1024 * 1024)

    # -- auth helpers --------------------------------------------------------------------------
    def annotator(self, request: Request) -> auth.Annotator:
        return auth.require_annotator(request, self.store, self.admin_token, self.token_cache)

    def admin(self, request: Request) -> None:
        auth.require_admin(request, self.store, self.admin_token, self.token_cache)

    # -- queries -------------------------------------------------------------------------------
    def visible_query(self, ann: auth.Annotator, query_id: str) -> tuple[RQuery, QueryRow]:
        """The query if this annotator may see it: 404 unknown, 403 someone else's."""
        with self.store.session() as s:
            row = s.get(QueryRow, query_id)
            if row is None:
                raise HTTPException(404, f"unknown query id {query_id!r}")
            if row.assigned_to is not None and row.assigned_to != ann.id:
                raise HTTPException(403, f"query {query_id!r} is not assigned to you")
            return self._query(row), row

    @staticmethod
    def _query(row: QueryRow) -> RQuery:
        return RQuery.from_dict({"id": row.id, "kind": row.kind, "run_id": row.run_id,
                                 "created_at": row.created_at, "payload": row.payload})

    def _open_filter(self, aid: str) -> list[Any]:
        answered = select(FeedbackRow.id).where(FeedbackRow.query_id == QueryRow.id,
                                                FeedbackRow.annotator_id == aid).exists()
        done_runs = select(RunRow.id).where(RunRow.status == "done")
        return [or_(QueryRow.assigned_to == aid, QueryRow.assigned_to.is_(None)), ~answered,
                or_(QueryRow.run_id.is_(None), QueryRow.run_id.not_in(done_runs))]

    def load_clip(self, ann: auth.Annotator, query_id: str, side: str) -> tuple[bytes, str | None]:
        """Render (or read the cached file of) one side of a pair, checking who may see it."""
        q, row = self.visible_query(ann, query_id)
        if not isinstance(q, PairQuery):
            raise HTTPException(400, f"query {query_id!r} is a {q.kind} query and has no clips")
        entry = (self.clips.pair_clip(q, side).read_bytes(), row.assigned_to)
        self.clip_mem.put((query_id, side), entry)
        return entry

    def open_queries(self, aid: str, kind: str, limit: int) -> list[QueryRow]:
        with self.store.session() as s:
            q = (select(QueryRow).where(QueryRow.kind == kind, *self._open_filter(aid))
                 .order_by(QueryRow.created_at, QueryRow.id).limit(limit))
            return list(s.execute(q).scalars())

    def progress(self, aid: str) -> dict[str, Any]:
        with self.store.session() as s:
            given = s.execute(select(func.count(FeedbackRow.id)).join(QueryRow, QueryRow.id == FeedbackRow.query_id)
                              .where(FeedbackRow.annotator_id == aid, FeedbackRow.withdrawn.is_(False),
                                     or_(FeedbackRow.value.is_not(None), QueryRow.kind == "demo"))).scalar_one()
            open_by_kind = dict(s.execute(select(QueryRow.kind, func.count(QueryRow.id))
                                          .where(*self._open_filter(aid)).group_by(QueryRow.kind)).all())
        open_n = int(sum(open_by_kind.values()))
        return {"given": int(given), "open": open_n, "wanted": int(given) + open_n,
                "open_by_kind": {k: int(open_by_kind.get(k, 0)) for k in ("pair", "step", "demo")}}

    def env_of_run(self, run_id: str | None) -> str | None:
        return self.store.run_env(run_id)

    def describe(self, row: QueryRow, env_id: str | None = None) -> dict[str, Any]:
        """What a page needs to show one query (never another annotator's data)."""
        q = self._query(row)
        d: dict[str, Any] = {"id": q.id, "kind": q.kind, "run_id": q.run_id, "created_at": q.created_at}
        if isinstance(q, PairQuery):
            assert q.left is not None and q.right is not None
            d.update(clips={"left": f"/api/clips/{q.id}/left", "right": f"/api/clips/{q.id}/right"},
                     length=max(len(q.left), len(q.right)), fps=CLIP_FPS, env_id=q.left.env_id)
        elif isinstance(q, StepQuery):
            d.update(frame=f"/api/frames/{q.id}", step=q.step, episode=q.episode, action=q.action,
                     action_meaning=action_meaning(env_id, q.action), env_id=env_id,
                     obs=[round(float(x), 4) for x in np.asarray(q.obs, dtype=np.float64).ravel()[:16]])
        elif isinstance(q, DemoQuery):
            d.update(env_id=q.env_id, seed=q.seed, max_steps=q.max_steps)
        return d

    def prerender(self, queries: list[RQuery], env_id: str | None) -> None:
        """Render preference clips of newly posted queries in the background so the first view is fast.

        Evaluative frames are single PNGs made in milliseconds on first request (pre-rendering thousands of
        them would take the CPU from people posting labels).
        """

        def work() -> None:
            with self._prerender_lock:
                for q in queries:
                    try:
                        if isinstance(q, PairQuery):
                            self.clips.pair_clip(q, "left")
                            self.clips.pair_clip(q, "right")
                    except Exception:  # a clip that fails here is rendered (or reported) on request
                        pass

        if queries:
            threading.Thread(target=work, name="rlhf-prerender", daemon=True).start()

    # -- labels --------------------------------------------------------------------------------
    def submit(self, ann: auth.Annotator, body: FeedbackIn) -> tuple[int, dict[str, Any]]:
        q, row = self.visible_query(ann, body.query_id)
        if isinstance(q, DemoQuery):
            raise HTTPException(400, "demonstrations are recorded by playing them: POST /api/demo/{id}/start")
        allowed = {0.0, 1.0} if isinstance(q, StepQuery) else {0.0, 0.5, 1.0}
        if body.value is not None and body.value not in allowed:
            raise HTTPException(422, f"value for a {q.kind} query must be one of {sorted(allowed)} or null (skip), "
                                     f"got {body.value}")
        now = time.time()
        asked = now if body.shown_at is None else min(max(body.shown_at, row.created_at), now)
        data = dict(body.data or {})
        if isinstance(q, StepQuery):
            data.setdefault("query_step", q.step)
            data.setdefault("episode", q.episode)
        fb = Feedback(q.id, ann.id, body.value, asked, now, body.step, data or None)
        with self.write_lock, self.store.session() as s:
            # one look for either kind of double submit: the same client key, or this query answered before
            prev = s.execute(select(FeedbackRow.id, FeedbackRow.query_id, FeedbackRow.client_key).where(
                FeedbackRow.annotator_id == ann.id,
                or_(FeedbackRow.client_key == body.client_key, FeedbackRow.query_id == q.id))
                .order_by(FeedbackRow.id)).all()
            for p in prev:
                if p.client_key == body.client_key:
                    raise HTTPException(409, {"message": f"client key {body.client_key!r} was already used: this "
                                                         f"answer is stored once, as feedback {p.id}",
                                              "feedback_id": p.id, "query_id": p.query_id})
            if prev:
                raise HTTPException(409, {"message": f"query {q.id!r} was already answered by you "
                                                     f"(feedback {prev[0].id}); nothing stored",
                                          "feedback_id": prev[0].id, "query_id": q.id})
            s.rollback()
            stored = self._add_feedback(fb, body.client_key)
        return 201, {"feedback_id": stored.id, "query_id": q.id, "value": stored.value}

    def _add_feedback(self, fb: Feedback, client_key: str | None) -> Feedback:
        try:
            return self.store.add_feedback(fb, client_key=client_key)
        except ConsentError as e:
            raise HTTPException(403, f"{e}. Read and agree to the consent text first (POST /api/consent).") from e
        except UnsafeInputError as e:
            raise HTTPException(422, str(e)) from e
        except StoreError as e:
            msg = str(e)
            code = 404 if "unknown query" in msg else 403 if ("withdrawn" in msg or "not assigned" in msg) else 400
            raise HTTPException(code, msg) from e

    # -- demonstrations ------------------------------------------------------------------------
    def demo_start(self, ann: auth.Annotator, query_id: str) -> dict[str, Any]:
        q, _row = self.visible_query(ann, query_id)
        if not isinstance(q, DemoQuery):
            raise HTTPException(400, f"query {query_id!r} is a {q.kind} query, not a demonstration")
        self._require_can_label(ann, q.id)
        import gymnasium as gym

        try:
            env = gym.make(q.env_id, render_mode="rgb_array")
        except Exception as e:
            raise HTTPException(400, f"environment {q.env_id!r} cannot be made here: {e}") from e
        if not isinstance(env.action_space, gym.spaces.Discrete):
            env.close()
            raise HTTPException(400, f"demonstrations need a discrete action space; {q.env_id} has {env.action_space}")
        obs, _ = env.reset(seed=q.seed)
        sess = DemoSession(q, env, [np.asarray(obs).tolist()])
        key = (ann.id, q.id)
        with self.demos_lock:
            old = self.demos.pop(key, None)
            self.demos[key] = sess
            while len(self.demos) > self.max_demo_sessions:
                _k, dropped = self.demos.popitem(last=False)
                dropped.env.close()
        if old is not None:
            old.env.close()
        return {"query_id": q.id, "env_id": q.env_id, "step": 0, "max_steps": q.max_steps,
                "frame": self._demo_frame(sess), "keys": demo_keys(q.env_id, int(env.action_space.n)),
                "done": False}

    def _require_can_label(self, ann: auth.Annotator, query_id: str) -> None:
        if ann.withdrawn:
            raise HTTPException(403, f"annotator {ann.id!r} has withdrawn; no feedback is accepted")
        if not self.store.has_consent(ann.id) and ann.kind == "human":
            raise HTTPException(403, f"annotator {ann.id!r} has not agreed to consent version "
                                     f"{self.store.consent_version!r}; read and agree first (POST /api/consent)")
        with self.store.session() as s:
            if s.execute(select(FeedbackRow.id).where(FeedbackRow.annotator_id == ann.id,
                                                      FeedbackRow.query_id == query_id)).first():
                raise HTTPException(409, f"query {query_id!r} was already answered by you")

    def _demo_frame(self, sess: DemoSession) -> str:
        with self.clips.renderer.lock:
            try:
                fr = sess.env.render()
            except Exception:
                fr = None
        if not isinstance(fr, np.ndarray):
            from rlhf_gym.web.clips import chart_frame

            fr = chart_frame(np.asarray(sess.obs[-1]), sess.query.env_id)
        return _frame_url(encode_png(fr))

    def _session(self, ann: auth.Annotator, query_id: str) -> DemoSession:
        with self.demos_lock:
            sess = self.demos.get((ann.id, query_id))
        if sess is None:
            raise HTTPException(404, f"no demonstration of {query_id!r} in progress; POST /api/demo/{query_id}/start")
        return sess

    def demo_step(self, ann: auth.Annotator, query_id: str, action: int) -> dict[str, Any]:
        sess = self._session(ann, query_id)
        with sess.lock:
            n = int(sess.env.action_space.n)
            if not 0 <= action < n:
                raise HTTPException(422, f"action must be in 0..{n - 1} for {sess.query.env_id}, got {action}")
            if sess.terminated or sess.truncated:
                raise HTTPException(409, "this episode is over; it is being stored")
            obs, r, term, trunc, _ = sess.env.step(action)
            sess.obs.append(np.asarray(obs).tolist())
            sess.acts.append(int(action))
            sess.rews.append(float(r))
            sess.terminated = bool(term)
            sess.truncated = bool(trunc) or (not term and len(sess.acts) >= sess.query.max_steps)
            out: dict[str, Any] = {"query_id": query_id, "step": len(sess.acts), "reward": float(r),
                                   "return": float(sum(sess.rews)), "frame": self._demo_frame(sess),
                                   "done": sess.terminated or sess.truncated}
        if out["done"]:
            out.update(self._demo_store(ann, sess))
        return out

    def demo_finish(self, ann: auth.Annotator, query_id: str) -> dict[str, Any]:
        sess = self._session(ann, query_id)
        with sess.lock:
            if not sess.acts:
                raise HTTPException(422, "play at least one step before finishing the demonstration")
            if not sess.terminated:
                sess.truncated = True
        return {"query_id": query_id, "step": len(sess.acts), "done": True, **self._demo_store(ann, sess)}

    def _demo_store(self, ann: auth.Annotator, sess: DemoSession) -> dict[str, Any]:
        q = sess.query
        traj = {"obs": sess.obs, "acts": sess.acts, "rews": sess.rews, "terminated": sess.terminated,
                "truncated": sess.truncated, "env_id": q.env_id, "seed": q.seed}
        fb = Feedback(q.id, ann.id, None, sess.started_at, time.time(), len(sess.acts),
                      {"trajectory": traj, "return": float(sum(sess.rews)), "steps": len(sess.acts)})
        with self.write_lock:
            stored = self._add_feedback(fb, f"demo:{q.id}")
        with self.demos_lock:
            if self.demos.get((ann.id, q.id)) is sess:
                del self.demos[(ann.id, q.id)]
        sess.env.close()
        return {"feedback_id": stored.id, "return": float(sum(sess.rews)), "progress": self.progress(ann.id)}

    # -- admin -----------------------------------------------------------------------------------
    def post_queries(self, body: PostQueriesIn) -> dict[str, Any]:
        parsed: list[RQuery] = []
        for i, d in enumerate(body.queries):
            try:
                q = RQuery.from_dict(d)
                q.payload()  # must serialise back
                ok_time = math.isfinite(float(q.created_at))
            except Exception as e:  # any malformed part of a query is the caller's error
                raise HTTPException(422, f"queries[{i}] is not a query: {e!r}") from e
            if not isinstance(q.id, str) or not re.match(ID_PATTERN, q.id):
                raise HTTPException(422, f"queries[{i}].id must match {ID_PATTERN}")
            if not ok_time:
                raise HTTPException(422, f"queries[{i}].created_at must be a finite unix time")
            if q.run_id is not None and body.run_id is not None and q.run_id != body.run_id:
                raise HTTPException(422, f"queries[{i}] belongs to run {q.run_id!r}, not {body.run_id!r}")
            parsed.append(q)
        with self.write_lock:
            if body.assigned_to is not None and self.store.annotator(body.assigned_to) is None:
                raise HTTPException(404, f"unknown annotator {body.assigned_to!r}")
            if body.run_id is not None:
                self.store.add_run(body.run_id, config={"env": body.env_id} if body.env_id else None)
                if body.env_id:
                    with self.store.session() as s, s.begin():
                        run = s.get(RunRow, body.run_id)
                        if run is not None and not (run.config or {}).get("env"):
                            run.config = {**(run.config or {}), "env": body.env_id}
            try:
                added = set(self.store.add_queries(parsed, run_id=body.run_id, assigned_to=body.assigned_to))
            except StoreError as e:
                raise HTTPException(400, str(e)) from e
        env_id = body.env_id or self.env_of_run(body.run_id)
        self.prerender([q for q in parsed if q.id in added], env_id)
        return {"added": [q.id for q in parsed if q.id in added],
                "existing": [q.id for q in parsed if q.id not in added]}

    def answers(self, run_id: str | None, since: int, limit: int) -> dict[str, Any]:
        with self.store.session() as s:
            q = (select(FeedbackRow, QueryRow.run_id).join(QueryRow, QueryRow.id == FeedbackRow.query_id)
                 .where(FeedbackRow.id > since, FeedbackRow.withdrawn.is_(False)))
            if run_id is not None:
                q = q.where(QueryRow.run_id == run_id)
            rows = s.execute(q.order_by(FeedbackRow.id).limit(limit)).all()
            aids = {r.annotator_id for r, _ in rows}
            consent = {}
            for aid in aids:
                c = s.execute(select(ConsentRow.version).where(ConsentRow.annotator_id == aid,
                                                               ConsentRow.agreed.is_(True))
                              .order_by(ConsentRow.id.desc()).limit(1)).scalar_one_or_none()
                consent[aid] = c
        # clean_json: a row stored before inputs were checked must not stop the feed (it would 500 forever)
        out = [clean_json({"id": r.id, "query_id": r.query_id, "annotator_id": r.annotator_id, "value": r.value,
                           "asked_at": r.asked_at, "answered_at": r.answered_at, "step": r.step, "data": r.data,
                           "run_id": rid, "consent_version": consent.get(r.annotator_id)}) for r, rid in rows]
        return {"answers": out, "cursor": out[-1]["id"] if out else since}

    def run_status(self, run_id: str) -> dict[str, Any]:
        with self.store.session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise HTTPException(404, f"unknown run {run_id!r}")
            nq = s.execute(select(func.count(QueryRow.id)).where(QueryRow.run_id == run_id)).scalar_one()
            na = s.execute(select(func.count(FeedbackRow.id)).join(QueryRow, QueryRow.id == FeedbackRow.query_id)
                           .where(QueryRow.run_id == run_id, FeedbackRow.withdrawn.is_(False))).scalar_one()
            return {"run_id": run_id, "status": run.status, "queries": int(nq), "answers": int(na)}

    def finish_run(self, run_id: str) -> dict[str, Any]:
        self.run_status(run_id)
        with self.write_lock, self.store.session() as s, s.begin():
            s.execute(update(RunRow).where(RunRow.id == run_id).values(status="done"))
        self.store.audit("admin", "run.finish", {"run": run_id})
        self.clip_mem.clear()
        return {"run_id": run_id, "status": "done", "clips_removed": self.clips.cleanup_run(run_id)}


async def _annotator_dep(request: Request) -> auth.Annotator:
    web: WebApp = request.app.state.web
    # Fast path without a thread hop when the credential was seen in the last seconds; else ask the store.
    cred = auth.credential(request)
    if cred and not auth.is_admin_token(cred[1], web.admin_token):
        hit = web.token_cache.peek(cred[1], cred[0])
        if hit is not None:
            return hit
    return await run_in_threadpool(web.annotator, request)


def _admin_dep(request: Request) -> None:
    request.app.state.web.admin(request)


#: route parameter type: the annotator making the request (401/403 otherwise).
AnnotatorDep = Annotated[auth.Annotator, Depends(_annotator_dep)]


def _page(name: str) -> str:
    return resources.files("rlhf_gym.web").joinpath("static", name).read_text(encoding="utf-8")


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
    static_dir = resources.files("rlhf_gym.web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")

    admin = _admin_dep
    # -- pages ---------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request, token: str | None = None) -> Response:
        if token is not None:
            ann = web.token_cache.get(token)
            if ann is None or ann.withdrawn:
                return HTMLResponse("<h1>Invite link not valid</h1><p>This invite is unknown, expired or was "
                                    "revoked. Ask the project owner for a new invite link.</p>", status_code=401)
            # The cookie holds a fresh session secret, never the invite token (logout can end it).
            secret, expires = store.start_session(ann.id)
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(auth.COOKIE, secret, httponly=True, samesite="strict", secure=secure_cookie,
                            max_age=max(1, int(expires - time.time())))
            return resp
        return HTMLResponse(_page("index.html"))

    def page_route(name: str) -> Any:
        def page() -> HTMLResponse:
            return HTMLResponse(_page(f"{name}.html"))

        return page

    for name in ("preference", "evaluative", "demo"):
        app.add_api_route(f"/{name}", page_route(name), methods=["GET"], response_class=HTMLResponse,
                          include_in_schema=False)

    # -- annotator API -------------------------------------------------------------------------
    @app.get("/api/me")
    def me(ann: AnnotatorDep) -> dict[str, Any]:
        pol = web.policy
        agreed = store.has_consent(ann.id, pol.consent_version)
        return {"annotator_id": ann.id, "withdrawn": ann.withdrawn,
                "consent": {"version": pol.consent_version, "purpose": pol.purpose, "text": pol.consent_text,
                            "agreed": agreed, "needed": ann.kind == "human" and not agreed},
                "progress": web.progress(ann.id)}

    @app.post("/api/consent")
    def consent(body: ConsentIn, ann: AnnotatorDep) -> dict[str, Any]:
        pol = web.policy
        if ann.withdrawn:
            raise HTTPException(403, f"annotator {ann.id!r} has withdrawn")
        if body.version != pol.consent_version:
            raise HTTPException(409, f"the consent text changed (now version {pol.consent_version!r}, you saw "
                                     f"{body.version!r}); reload the page and read it again")
        with web.write_lock:
            store.record_consent(ann.id, pol.consent_version, pol.purpose + "\n" + pol.consent_text, body.agree)
        return {"annotator_id": ann.id, "version": pol.consent_version, "agreed": body.agree}

    @app.post("/api/withdraw")
    def withdraw(body: WithdrawIn, ann: AnnotatorDep) -> JSONResponse:
        if not body.confirm:
            raise HTTPException(422, "send {\"confirm\": true} to withdraw")
        with web.write_lock:
            out = store.withdraw_annotator(ann.id, actor=ann.id, reason="withdrawn by the annotator (web)")
        web.token_cache.forget(ann.id)  # their invite is revoked and every session ended
        resp = JSONResponse({"annotator_id": ann.id, "labels_withdrawn": out["labels_withdrawn"],
                             "withdrawn": True})
        resp.delete_cookie(auth.COOKIE)
        return resp

    @app.post("/api/logout")
    def logout(request: Request) -> JSONResponse:
        """End every session of the signed-in person (all their browsers) and clear this cookie."""
        ended = 0
        try:
            ann = web.annotator(request)
        except HTTPException:
            ann = None
        if ann is not None:
            with web.write_lock:
                ended = store.end_sessions(ann.id, actor=ann.id, reason="logout (web)")
            web.token_cache.forget(ann.id)
        resp = JSONResponse({"ok": True, "sessions_ended": ended})
        resp.delete_cookie(auth.COOKIE)
        return resp

    @app.get("/api/queries")
    def queries(ann: AnnotatorDep, kind: Literal["pair", "step", "demo"] = "pair",
                limit: int = Query(5, ge=1, le=200)) -> dict[str, Any]:
        rows = web.open_queries(ann.id, kind, limit)
        envs = {rid: web.env_of_run(rid) for rid in {r.run_id for r in rows}} if kind == "step" else {}
        return {"queries": [web.describe(r, envs.get(r.run_id)) for r in rows], "progress": web.progress(ann.id)}

    @app.get("/api/clips/{query_id}/{side}", response_class=Response,
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

    @app.get("/api/frames/{query_id}", response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
    def frame(query_id: str, ann: AnnotatorDep) -> FileResponse:
        q, row = web.visible_query(ann, query_id)
        if not isinstance(q, StepQuery):
            raise HTTPException(400, f"query {query_id!r} is a {q.kind} query, not an evaluative step")
        path = web.clips.step_frame(q, web.env_of_run(row.run_id))
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/feedback", status_code=201)
    async def feedback(body: FeedbackIn, ann: AnnotatorDep,
                       progress: bool = Query(False, description="also return my progress counter")) -> JSONResponse:
        # Labels are written by one writer thread, in arrival order: writes are serial in the store anyway,
        # and one thread avoids dozens of pool threads fighting over the lock and the GIL.
        code, out = await asyncio.get_running_loop().run_in_executor(web.writer, web.submit, ann, body)
        if progress:
            out["progress"] = await run_in_threadpool(web.progress, ann.id)
        return JSONResponse(out, status_code=code)

    @app.post("/api/demo/{query_id}/start")
    def demo_start(query_id: str, ann: AnnotatorDep) -> dict[str, Any]:
        return web.demo_start(ann, query_id)

    @app.post("/api/demo/{query_id}/step")
    def demo_step(query_id: str, body: ActionIn, ann: AnnotatorDep) -> dict[str, Any]:
        return web.demo_step(ann, query_id, body.action)

    @app.post("/api/demo/{query_id}/finish")
    def demo_finish(query_id: str, ann: AnnotatorDep) -> dict[str, Any]:
        return web.demo_finish(ann, query_id)

    # -- admin API -----------------------------------------------------------------------------
    @app.post("/api/admin/queries", dependencies=[Depends(admin)])
    def admin_queries(body: PostQueriesIn) -> dict[str, Any]:
        return web.post_queries(body)

    @app.get("/api/admin/answers", dependencies=[Depends(admin)])
    def admin_answers(run_id: str | None = Query(None, max_length=64), since: int = Query(0, ge=0, le=2**62),
                      limit: int = Query(500, ge=1, le=5000)) -> dict[str, Any]:
        return web.answers(run_id, since, limit)

    @app.get("/api/admin/runs/{run_id}", dependencies=[Depends(admin)])
    def admin_run(run_id: str) -> dict[str, Any]:
        return web.run_status(run_id)

    @app.post("/api/admin/runs/{run_id}/finish", dependencies=[Depends(admin)])
    def admin_finish(run_id: str) -> dict[str, Any]:
        return web.finish_run(run_id)

    @app.get("/api/admin/report", dependencies=[Depends(admin)])
    def admin_report() -> dict[str, Any]:
        """Agreement and bias report of every annotator (see rlhf_gym.governance.report)."""
        from rlhf_gym.governance.report import annotator_report

        return annotator_report(store)

    @app.get("/api/admin/report.html", response_class=HTMLResponse, dependencies=[Depends(admin)],
             include_in_schema=False)
    def admin_report_html() -> HTMLResponse:
        from rlhf_gym.governance.admin import render_admin_html
        from rlhf_gym.governance.report import annotator_report

        return HTMLResponse(render_admin_html(annotator_report(store)))

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    def admin_page() -> HTMLResponse:
        # The shell holds no data: it asks for the admin token and fetches the report with it as a header.
        return HTMLResponse(_page("admin.html"))

    @app.get("/api/health", include_in_schema=False)
    def health() -> dict[str, Any]:
        return {"ok": True}

    return app
