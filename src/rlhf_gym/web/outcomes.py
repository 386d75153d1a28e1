"""Trade-off questions in the annotation app: which of two outcomes (per-objective returns) is better?

An :class:`~rlhf_gym.types.OutcomeQuery` carries the two outcomes' returns per objective and, when the
run sent them, each episode's seed and actions (``meta["left"|"right"] = {"seed", "actions"}``). The
page shows a clip of each episode, replayed here with the run's environment, above a table of its
returns; where there are no actions, or the environment cannot be made or rendered on this server,
the page shows the two tables alone. Answers go through ``POST /api/feedback`` like a preference
pair's: 1 left, 0 right, 0.5 equally good, null can't tell.

Clip paths in the query (``left_clip``, written by a terminal run on its own machine) are never read:
a query's payload is not trusted as a file name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import HTTPException

from rlhf_gym.store.annotation import StoredQuery
from rlhf_gym.types import OutcomeQuery
from rlhf_gym.web import auth
from rlhf_gym.web.clips import CLIP_FPS, encode_webp

#: most frames in one outcome clip: a longer episode is shown sped up (every n-th step), both sides alike
MAX_FRAMES = 160
SIDES = ("left", "right")


def _episode(q: OutcomeQuery, side: str) -> tuple[int, list[Any]] | None:
    """(seed, actions) of one side's episode, or None when the run did not send them."""
    m = q.meta.get(side) if isinstance(q.meta, dict) else None
    if not isinstance(m, dict) or not isinstance(m.get("seed"), int) or not isinstance(m.get("actions"), list):
        return None
    return int(m["seed"]), list(m["actions"])


def has_clips(q: OutcomeQuery) -> bool:
    return all(_episode(q, s) is not None for s in SIDES)


def _stride(q: OutcomeQuery) -> int:
    """Steps per frame, the same for both sides so the two clips keep in step."""
    n = max(len(ep[1]) + 1 for ep in (_episode(q, s) for s in SIDES) if ep is not None)
    return max(1, -(-n // MAX_FRAMES))


def describe(sq: StoredQuery, env_id: str | None) -> dict[str, Any]:
    """What the outcome page needs for one query: objectives, both outcomes, clip URLs if any."""
    q = sq.query
    assert isinstance(q, OutcomeQuery)
    names = list(q.objectives) or [f"objective {i}" for i in range(len(q.left))]
    d: dict[str, Any] = {"id": q.id, "kind": q.kind, "run_id": q.run_id, "created_at": q.created_at,
                         "env_id": env_id, "objectives": names,
                         "left": [float(x) for x in q.left], "right": [float(x) for x in q.right], "clips": None}
    if env_id and has_clips(q):
        eps = {s: _episode(q, s) for s in SIDES}
        d["clips"] = {s: f"/api/outcomes/{q.id}/clip/{s}" for s in SIDES}
        d["steps"] = {s: len(eps[s][1]) for s in SIDES if eps[s] is not None}
        d["fps"], d["stride"] = CLIP_FPS, _stride(q)
    return d


def _frames(env_id: str, seed: int, actions: list[Any], stride: int, lock: Any) -> list[np.ndarray]:
    """Replay the episode and render every ``stride``-th state (and the last)."""
    from rlhf_gym.envs import try_render
    from rlhf_gym.morl.envs import make_vector_env

    with lock:  # pygame renderers are not thread-safe
        try:
            env = make_vector_env(env_id, render_mode="rgb_array")
        except Exception as e:  # unknown id, missing extra: the page shows the returns alone
            raise HTTPException(404, f"no clip: environment {env_id!r} cannot be made on this server ({e})") from e
        try:
            env.reset(seed=seed)
            frames: list[np.ndarray] = []
            for t in range(len(actions) + 1):
                if t % stride == 0 or t == len(actions):
                    fr = try_render(env)
                    if fr is None:
                        raise HTTPException(404, f"no clip: {env_id} does not render here")
                    frames.append(fr)
                if t < len(actions):
                    a = actions[t]
                    _obs, _r, term, trunc, _ = env.step(np.asarray(a) if isinstance(a, list) else a)
                    if term or trunc:
                        fr = try_render(env)
                        if fr is not None:
                            frames.append(fr)
                        break
        finally:
            env.close()
    return frames


def outcome_clip(web: Any, ann: auth.Annotator, query_id: str, side: str) -> tuple[bytes, str | None]:
    """Animated WebP of one side's episode (cached on disk and in memory), checking who may see it."""
    sq = web.visible_query(ann, query_id)
    q = sq.query
    if not isinstance(q, OutcomeQuery):
        raise HTTPException(400, f"query {query_id!r} is a {q.kind} query, not an outcome comparison")
    env_id = web.env_of_run(sq.run_id)
    ep = _episode(q, side)
    if env_id is None or ep is None:
        raise HTTPException(404, f"no clip: query {query_id!r} carries no episode to replay (compare the returns)")
    stride = _stride(q)
    other = _episode(q, "right" if side == "left" else "left")
    longest = max(len(ep[1]), len(other[1]) if other else 0)
    n = longest // stride + 1 + (1 if longest % stride else 0)  # the longer side's frames: both loop in step

    def make() -> bytes:
        frames = _frames(env_id, ep[0], ep[1], stride, web.clips.renderer.lock)
        return encode_webp(frames, CLIP_FPS, n_frames=n)

    path = web.clips._get(web.clips.path(sq.run_id, q.id, f"outcome-{side}.webp"), make)
    entry = (path.read_bytes(), sq.assigned_to)
    web.clip_mem.put((query_id, f"outcome-{side}"), entry)
    return entry
