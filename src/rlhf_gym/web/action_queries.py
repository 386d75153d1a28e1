"""DAgger's questions in the annotation app: "which action would you take here?" (page ``/dagger``).

An :class:`~rlhf_gym.types.ActionQuery` names a state the learner visited; it carries the episode's
reset seed and the actions taken before it, so the server replays the episode to that state with the
one clip renderer and draws it (registered environment ids only). The page shows that frame, the task
and one button per action with its meaning and key; the person presses a key or taps, or says
"can't tell" (a skip, which DAgger counts against its budget like any label asked).

Answers go through ``POST /api/feedback``: ``value`` null and ``data = {"action": a}`` with ``a`` an
integer action of that environment, or no ``data`` at all for a skip. Only discrete actions are
labelled in a browser: a query about a continuous-action task is refused with a message when a run
posts it (and when anyone tries to answer one already stored).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from fastapi import HTTPException

from rlhf_gym.store.annotation import StoredQuery
from rlhf_gym.types import ActionQuery
from rlhf_gym.web.actions import action_meaning, demo_keys, task_text


class ActionsRefused(ValueError):
    """The web app cannot ask a person for an action of this environment (why is the message)."""


@lru_cache(maxsize=128)
def _space(env_id: str) -> tuple[int, int] | str:
    """(first action, number of actions) of a discrete task, or why the page cannot label it."""
    import gymnasium as gym

    from rlhf_gym.envs import make_registered_env

    try:
        env = make_registered_env(env_id)
    except Exception as e:  # an id this server cannot make: no buttons, no range to check answers against
        return f"environment {env_id!r} cannot be made on this server ({e})"
    try:
        sp = env.action_space
    finally:
        env.close()
    if isinstance(sp, gym.spaces.Discrete):
        return int(sp.start), int(sp.n)
    return (f"{env_id} has continuous actions ({sp}); the web app labels discrete actions only. Label its "
            "DAgger states with a simulated teacher (--teacher expert or noisy) instead")


def action_range(env_id: str | None) -> range:
    """The actions a person may choose in ``env_id``; :class:`ActionsRefused` if the page cannot label it."""
    if not env_id:
        raise ActionsRefused("the query names no environment, so its actions are unknown")
    sp = _space(env_id)
    if isinstance(sp, str):
        raise ActionsRefused(sp)
    return range(sp[0], sp[0] + sp[1])


def env_of(q: ActionQuery, run_env: str | None) -> str | None:
    """The environment of a query: its own, else its run's."""
    return q.env_id or run_env


def check_postable(q: ActionQuery, run_env: str | None, where: str) -> None:
    """Refuse (422, naming the query) an action query the page could not show: unknown or continuous env."""
    try:
        action_range(env_of(q, run_env))
    except ActionsRefused as e:
        raise HTTPException(422, f"{where}: {e}") from e


def buttons(env_id: str, actions: range) -> list[dict[str, Any]]:
    """One entry per action: its number, what it means and the key that chooses it (None: tap only)."""
    keys = {k["action"]: k["key"] for k in demo_keys(env_id, actions.stop)}
    return [{"action": a, "label": action_meaning(env_id, a), "key": keys.get(a)} for a in actions]


def describe(sq: StoredQuery, run_env: str | None) -> dict[str, Any]:
    """What the page needs for one action query: frame URL, task, buttons (or why it cannot be labelled)."""
    q = sq.query
    assert isinstance(q, ActionQuery)
    env_id = env_of(q, run_env)
    d: dict[str, Any] = {"id": q.id, "kind": q.kind, "run_id": q.run_id, "created_at": q.created_at,
                         "env_id": env_id, "task": task_text(env_id), "step": q.step, "episode": q.episode,
                         "episode_step": None if q.actions is None else len(q.actions),
                         "frame": f"/api/frames/{q.id}", "actions": None, "refused": None,
                         "obs": [round(float(x), 4) for x in np.asarray(q.obs, dtype=np.float64).ravel()[:16]]}
    try:
        d["actions"] = buttons(env_id or "", action_range(env_id))
    except ActionsRefused as e:
        d["refused"] = str(e)
    return d


def answer_data(q: ActionQuery, run_env: str | None, value: float | None,
                data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stored ``data`` of an answer (``{"action": a}``, or None for a skip); 422 naming the bad field."""
    if value is not None:
        raise HTTPException(422, "value: an action query is answered with data.action; value must be null")
    data = dict(data or {})
    extra = sorted(k for k in data if k != "action")
    if extra:
        raise HTTPException(422, f"data.{extra[0]}: an action answer holds only data.action")
    if "action" not in data or data["action"] is None:
        return None  # "can't tell": a skip
    env_id = env_of(q, run_env)
    try:
        allowed = action_range(env_id)
    except ActionsRefused as e:
        raise HTTPException(422, f"data.action: {e}") from e
    a = data["action"]
    if isinstance(a, bool) or not isinstance(a, int):
        raise HTTPException(422, f"data.action must be an integer action of {env_id}, got {a!r}")
    if a not in allowed:
        raise HTTPException(422, f"data.action must be in {allowed.start}..{allowed.stop - 1} for {env_id}, got {a}")
    return {"action": a}
