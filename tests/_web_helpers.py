"""Helpers shared by the web app tests: a store with two consenting people, queries, a live server."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlhf_gym.governance.consent import FeedbackPolicy
from rlhf_gym.rollouts import cut_segments, rollout
from rlhf_gym.store import FeedbackStore
from rlhf_gym.types import DemoQuery, PairQuery, Query, StepQuery

ADMIN = "admin-token-for-tests"
TOKENS = {"alice": "tok-alice-0123456789", "bob": "tok-bob-0123456789"}
POLICY = FeedbackPolicy()


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


def headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def add_people(store: FeedbackStore, consent: bool = True) -> None:
    for name, tok in TOKENS.items():
        store.add_annotator(name, kind="human", token=tok)
        if consent:
            store.record_consent(name, POLICY.consent_version, POLICY.purpose + "\n" + POLICY.consent_text, True)


def make_queries(run_id: str = "run-1", n_pairs: int = 2, n_steps: int = 3, seg_len: int = 6,
                 seed: int = 0) -> dict[str, list[Query]]:
    """CartPole pair, step and demo queries from a seeded random rollout."""
    env = gym.make("CartPole-v1")
    env.action_space.seed(seed)
    traj = rollout(env, lambda _o: env.action_space.sample(), seed=seed)
    while len(traj) < max(2 * n_pairs * seg_len, n_steps):
        seed += 1
        traj = rollout(env, lambda _o: env.action_space.sample(), seed=seed)
    segs = list(cut_segments(traj, seg_len))
    pairs = [PairQuery.make(segs[2 * i], segs[2 * i + 1], run_id=run_id) for i in range(n_pairs)]
    steps = [StepQuery.make(traj.obs[t], int(traj.acts[t]), step=t, episode=0, run_id=run_id) for t in range(n_steps)]
    demos = [DemoQuery.make("CartPole-v1", seed=3, max_steps=15, run_id=run_id)]
    env.close()
    return {"pair": pairs, "step": steps, "demo": demos}


def post_queries(client: Any, queries: list[Query], run_id: str = "run-1", assigned_to: str | None = None,
                 env_id: str = "CartPole-v1") -> Any:
    return client.post("/api/admin/queries", headers=admin_headers(),
                       json={"run_id": run_id, "env_id": env_id, "assigned_to": assigned_to,
                             "queries": [q.to_dict() for q in queries]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a thread."""

    app: Any
    port: int = 0

    def __post_init__(self) -> None:
        import uvicorn

        self.port = self.port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def feedback_rows(store: FeedbackStore) -> list:
    return store.feedback(include_withdrawn=True)


def trajectory_ok(data: dict[str, Any]) -> bool:
    t = data["trajectory"]
    return len(t["obs"]) == len(t["acts"]) + 1 and len(t["rews"]) == len(t["acts"])


def tmp_app(tmp_path: Path, store: FeedbackStore | None = None):
    from rlhf_gym.web.app import create_app

    store = store or FeedbackStore(tmp_path / "web.db")
    return store, create_app(store, ADMIN, tmp_path / "clips", policy=POLICY)


__all__ = ["ADMIN", "TOKENS", "POLICY", "np"]


def pg_database(pg_url: str):
    """A fresh PostgreSQL database on the test server: (url, admin engine, name); drop it with drop_pg."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from rlhf_gym.store import resolve_url

    base = make_url(resolve_url(pg_url))
    name = f"rlhf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    return base.set(database=name).render_as_string(hide_password=False), admin, name


def drop_pg(admin: Any, name: str) -> None:
    from sqlalchemy import text

    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
