"""The state and logic behind the annotation routes: who may see what, labels, demonstrations, admin.

Every read and write goes through :class:`~rlhf_gym.store.FeedbackStore` methods; nothing here
speaks SQL. The routes (``routes_pages``, ``routes_annotator``, ``routes_admin``) are thin.
"""

from __future__ import annotations

import asyncio
import base64
import math
import queue
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from rlhf_gym.governance.consent import FeedbackPolicy
from rlhf_gym.store import AlreadyAnswered, ConsentError, FeedbackStore, KeyUsed, StoreError
from rlhf_gym.store.access import QueryMeta
from rlhf_gym.store.annotation import StoredQuery
from rlhf_gym.store.batch import Credential
from rlhf_gym.types import ActionQuery, DemoQuery, Feedback, PairQuery, StepQuery
from rlhf_gym.types import Query as RQuery
from rlhf_gym.web import action_queries, auth
from rlhf_gym.web.actions import action_meaning, demo_keys
from rlhf_gym.web.batching import start_drainer
from rlhf_gym.web.bodies import ID_PATTERN, FeedbackIn, PostQueriesIn
from rlhf_gym.web.clips import CLIP_FPS, ClipCache, encode_png


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


class LabelWriter:
    """One writer thread that drains the queue of labels and stores each batch in one transaction.

    A person's POST waits for its own outcome (stored, or refused with the reason), so a 2xx still
    means the label is committed; under load, many labels share one commit instead of queueing for
    one commit each.
    """

    def __init__(self, store: FeedbackStore, max_batch: int = 256) -> None:
        self.store, self.max_batch = store, max_batch
        self._q: queue.SimpleQueue[tuple[Feedback, str | None, Credential | None, Future]] = queue.SimpleQueue()
        self.batches = 0
        self.labels = 0
        start_drainer("rlhf-label-writer", self._q, max_batch, self._store)

    def put(self, fb: Feedback, client_key: str | None, credential: Credential | None = None) -> Future:
        """Queue one label; the future gets the stored answer or the error that refused it.

        ``credential``: the token or session it came with, re-checked under the write lock when any
        revocation was audited since it was last found live.
        """
        fut: Future = Future()
        self._q.put((fb, client_key, credential, fut))
        return fut

    def _store(self, batch: list[tuple[Feedback, str | None, Credential | None, Future]]) -> None:
        try:
            results: list[Any] = self.store.add_feedback_many([(fb, key) for fb, key, _c, _f in batch],
                                                              credentials=[c for _fb, _k, c, _f in batch])
        except Exception as e:  # the database failed the whole batch: every label in it is refused
            results = [e] * len(batch)
        self.batches += 1
        self.labels += len(batch)
        for (_fb, _key, _c, fut), res in zip(batch, results, strict=True):
            fut.set_result(res)


class WebApp:
    """State behind the routes: the store, the clip cache, the write lock and demos in progress."""

    def __init__(self, store: FeedbackStore, admin_token: str, clip_dir: str | Path,
                 policy: FeedbackPolicy | None = None, max_demo_sessions: int = 100) -> None:
        if not admin_token or len(admin_token) < 8:
            raise ValueError("the admin token must be at least 8 characters")
        self.store = store
        self.admin_token = admin_token
        self.policy = policy or FeedbackPolicy()
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
        #: first requests of people not yet in memory: their credentials are looked up in batches
        self.resolver = auth.CredentialResolver(store)
        #: group commit: one thread stores every label queued while the previous batch was written
        self.labels = LabelWriter(store)
        #: (query id, side) -> (webp bytes, annotator it is assigned to or None), most recent last
        self.clip_mem = _LRU(max_bytes=64 * 1024 * 1024)

    # -- auth helpers --------------------------------------------------------------------------
    def annotator(self, request: Request, arrived: float | None = None) -> auth.Annotator:
        """The annotator of a request, with credentials checked against every change audited before ``arrived``."""
        return auth.require_annotator(request, self.store, self.admin_token, self.token_cache, arrived=arrived)

    def label_from_memory(self, request: Request, body: FeedbackIn) -> tuple[auth.Annotator, Credential, Feedback] | None:
        """Sender and checked label when both the credential and the query are in memory (no store call,
        so the event loop can do it without a thread hop); None otherwise (then :meth:`sender` and
        :meth:`prepare` in a pool thread)."""
        cred = auth.credential(request)
        if cred is None or auth.is_admin_token(cred[1], self.admin_token):
            return None
        hit = self.token_cache.vouch_cached(cred[1], cred[0])
        meta = self.store.access.query(body.query_id)
        if hit is None or meta is None or meta.kind == "action":  # an action answer is checked against its env
            return None
        return hit[0], hit[1], self.prepare(hit[0], body, meta)

    async def label_checked(self, request: Request, body: FeedbackIn) -> tuple[auth.Annotator, Credential | None, Feedback]:
        """Sender and checked label: from memory, else with the credential looked up in a batch
        (:class:`~rlhf_gym.web.auth.CredentialResolver`) and the query from memory or a pool thread; an
        unknown credential, the admin token or a failed lookup take the ordinary path, which says why."""
        hit = self.label_from_memory(request, body)
        if hit is not None:
            return hit
        cred = auth.credential(request)
        if cred is not None and not auth.is_admin_token(cred[1], self.admin_token):
            try:
                found = await asyncio.wrap_future(self.resolver.lookup(*cred))
            except Exception:
                found = None
            if found is not None:
                ann, via = found
                meta = self.store.access.query(body.query_id)
                if meta is not None and meta.kind != "action":
                    return ann, via, self.prepare(ann, body, meta)
                return ann, via, await run_in_threadpool(self.prepare, ann, body)
        return await run_in_threadpool(self._check_label, request, body)

    def _check_label(self, request: Request, body: FeedbackIn) -> tuple[auth.Annotator, Credential | None, Feedback]:
        ann, cred = self.sender(request)
        return ann, cred, self.prepare(ann, body)

    def sender(self, request: Request) -> tuple[auth.Annotator, Credential | None]:
        """The annotator of a label request, from memory when seen before (the label writer re-checks it)."""
        return auth.require_sender(request, self.store, self.admin_token, self.token_cache, fresh=False)

    def admin(self, request: Request) -> None:
        auth.require_admin(request, self.store, self.admin_token, self.token_cache)

    # -- queries -------------------------------------------------------------------------------
    def visible_query(self, ann: auth.Annotator, query_id: str) -> StoredQuery:
        """The query if this annotator may see it: 404 unknown, 403 someone else's."""
        sq = self.store.stored_query(query_id)
        if sq is None:
            raise HTTPException(404, f"unknown query id {query_id!r}")
        if sq.assigned_to is not None and sq.assigned_to != ann.id:
            raise HTTPException(403, f"query {query_id!r} is not assigned to you")
        return sq

    def load_clip(self, ann: auth.Annotator, query_id: str, side: str) -> tuple[bytes, str | None]:
        """Render (or read the cached file of) one side of a pair, checking who may see it."""
        sq = self.visible_query(ann, query_id)
        q = sq.query
        if not isinstance(q, PairQuery):
            raise HTTPException(400, f"query {query_id!r} is a {q.kind} query and has no clips")
        entry = (self.clips.pair_clip(q, side).read_bytes(), sq.assigned_to)
        self.clip_mem.put((query_id, side), entry)
        return entry

    def open_queries(self, aid: str, kind: str, limit: int) -> list[StoredQuery]:
        return self.store.open_queries(aid, kind, limit)

    def progress(self, aid: str) -> dict[str, Any]:
        return self.store.progress(aid)

    def env_of_run(self, run_id: str | None) -> str | None:
        return self.store.run_env(run_id)

    def describe(self, sq: StoredQuery, env_id: str | None = None) -> dict[str, Any]:
        """What a page needs to show one query (never another annotator's data)."""
        q = sq.query
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
        elif isinstance(q, ActionQuery):
            return action_queries.describe(sq, env_id)
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
    def prepare(self, ann: auth.Annotator, body: FeedbackIn, meta: QueryMeta | None = None) -> Feedback:
        """Check one label against its query (who may answer it, allowed values); no payload is decoded.

        Whether the person may still give labels (withdrawal, consent) and whether this is a second
        answer or a resend are decided by the label writer, under the database's write lock.
        """
        meta = meta or self.store.query_meta(body.query_id, for_annotator=ann.id)
        if meta is None:
            raise HTTPException(404, f"unknown query id {body.query_id!r}")
        if meta.assigned_to is not None and meta.assigned_to != ann.id:
            raise HTTPException(403, f"query {body.query_id!r} is not assigned to you")
        if meta.kind == "demo":
            raise HTTPException(400, "demonstrations are recorded by playing them: POST /api/demo/{id}/start")
        if meta.kind == "action":
            return self._prepare_action(ann, body, meta)
        allowed = {0.0, 1.0} if meta.kind == "step" else {0.0, 0.5, 1.0}
        if body.value is not None and body.value not in allowed:
            raise HTTPException(422, f"value for a {meta.kind} query must be one of {sorted(allowed)} or null (skip), "
                                     f"got {body.value}")
        now = time.time()
        asked = now if body.shown_at is None else min(max(body.shown_at, meta.created_at), now)
        data = dict(body.data or {})
        if meta.kind == "step":
            data.setdefault("query_step", meta.step)
            data.setdefault("episode", meta.episode)
        return Feedback(meta.id, ann.id, body.value, asked, now, body.step, data or None)

    def _prepare_action(self, ann: auth.Annotator, body: FeedbackIn, meta: QueryMeta) -> Feedback:
        """An answer to a DAgger query: an action of the query's environment in ``data``, or a skip."""
        sq = self.store.stored_query(meta.id)
        if sq is None or not isinstance(sq.query, ActionQuery):
            raise HTTPException(404, f"unknown query id {body.query_id!r}")
        data = action_queries.answer_data(sq.query, self.env_of_run(sq.run_id), body.value, body.data)
        now = time.time()
        asked = now if body.shown_at is None else min(max(body.shown_at, meta.created_at), now)
        return Feedback(meta.id, ann.id, None, asked, now, body.step, data)

    def submit(self, ann: auth.Annotator, body: FeedbackIn, credential: Credential | None = None) -> tuple[int, dict[str, Any]]:
        """Check and store one label through the group-commit writer (blocking; the route awaits instead)."""
        fb = self.prepare(ann, body)
        res = self.labels.put(fb, body.client_key, credential).result()
        return self.label_response(fb, res)

    def label_response(self, fb: Feedback, res: Feedback | Exception) -> tuple[int, dict[str, Any]]:
        """201 with the stored answer, or the HTTP error of a refused one."""
        if isinstance(res, Exception):
            raise self._http_error(res, fb)
        return 201, {"feedback_id": res.id, "query_id": fb.query_id, "value": res.value}

    def _add_feedback(self, fb: Feedback, client_key: str | None) -> Feedback:
        try:
            return self.store.add_feedback(fb, client_key=client_key)
        except StoreError as e:
            raise self._http_error(e, fb) from e

    def _http_error(self, e: Exception, fb: Feedback) -> HTTPException:
        """The HTTP answer to a refused label: the store's error types carry their status."""
        if isinstance(e, ConsentError):
            return HTTPException(e.http_status, f"{e}. Read and agree to the consent text first (POST /api/consent).")
        if isinstance(e, KeyUsed):  # a resend of a stored label: it counts as saved
            return HTTPException(e.http_status, {"message": str(e), "feedback_id": e.feedback.id,
                                                 "query_id": fb.query_id})
        if isinstance(e, AlreadyAnswered):  # another request or server process stored this person's answer first
            return HTTPException(e.http_status, {"message": f"{e} (feedback {e.feedback_id})",
                                                 "feedback_id": e.feedback_id, "query_id": fb.query_id})
        if isinstance(e, StoreError):
            return HTTPException(e.http_status, str(e))
        return HTTPException(503, f"the label could not be stored ({type(e).__name__}); send it again with the "
                                  "same client key")

    # -- demonstrations ------------------------------------------------------------------------
    def demo_start(self, ann: auth.Annotator, query_id: str) -> dict[str, Any]:
        q = self.visible_query(ann, query_id).query
        if not isinstance(q, DemoQuery):
            raise HTTPException(400, f"query {query_id!r} is a {q.kind} query, not a demonstration")
        self._require_can_label(ann, q.id)
        import gymnasium as gym

        from rlhf_gym.envs import make_registered_env

        try:
            env = make_registered_env(q.env_id, render_mode="rgb_array")
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
        if self.store.earlier_answers(ann.id, query_id):
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
        run_env = body.env_id or self.env_of_run(body.run_id)
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
            if isinstance(q, ActionQuery):  # a page must be able to show it: a known env with discrete actions
                action_queries.check_postable(q, run_env, f"queries[{i}]")
            parsed.append(q)
        with self.write_lock:
            if body.assigned_to is not None and self.store.annotator(body.assigned_to) is None:
                raise HTTPException(404, f"unknown annotator {body.assigned_to!r}")
            if body.run_id is not None:
                self.store.add_run(body.run_id, config={"env": body.env_id} if body.env_id else None)
                if body.env_id:
                    self.store.set_run_env(body.run_id, body.env_id)
            try:
                added = set(self.store.add_queries(parsed, run_id=body.run_id, assigned_to=body.assigned_to))
            except StoreError as e:
                raise HTTPException(e.http_status, str(e)) from e
        env_id = run_env
        self.prerender([q for q in parsed if q.id in added], env_id)
        return {"added": [q.id for q in parsed if q.id in added],
                "existing": [q.id for q in parsed if q.id not in added]}

    def answers(self, run_id: str | None, since: int, limit: int) -> dict[str, Any]:
        return self.store.answers_since(run_id, since, limit)

    def run_status(self, run_id: str) -> dict[str, Any]:
        out = self.store.run_counts(run_id)
        if out is None:
            raise HTTPException(404, f"unknown run {run_id!r}")
        return out

    def finish_run(self, run_id: str) -> dict[str, Any]:
        self.run_status(run_id)
        with self.write_lock:
            self.store.finish_run(run_id)
        self.clip_mem.clear()
        return {"run_id": run_id, "status": "done", "clips_removed": self.clips.cleanup_run(run_id)}

