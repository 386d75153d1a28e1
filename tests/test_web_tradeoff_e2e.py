"""`train --feedback tradeoff --teacher web` end to end: a live app and a consenting person who answers
each outcome comparison by their own weights over HTTP (the page's calls), no --annotator given."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest

from _web_helpers import ADMIN, headers
from rlhf_gym.config import TrainConfig
from rlhf_gym.pipeline import train
from rlhf_gym.store import FeedbackStore

pytest.importorskip("mo_gymnasium")


def test_tradeoff_run_gets_its_answers_through_the_web_app(live_web, tmp_path):
    srv, server_store = live_web
    w = np.array([0.2, 0.8])  # alice cares mostly about time
    answered: list[str] = []
    clip_types: list[str] = []
    stop = threading.Event()

    def person() -> None:
        with httpx.Client(base_url=srv.url, headers=headers("alice"), timeout=20) as c:
            while not stop.is_set():
                for q in c.get("/api/outcomes", params={"limit": 5}).json()["queries"]:
                    if not clip_types and q["clips"]:
                        clip_types.append(c.get(q["clips"]["left"]).headers["content-type"])
                    du = w @ (np.array(q["left"]) - np.array(q["right"]))
                    value = 0.5 if abs(du) < 1e-9 else float(du > 0)
                    r = c.post("/api/feedback", json={"query_id": q["id"], "value": value, "client_key": q["id"]})
                    assert r.status_code == 201, r.text
                    answered.append(q["id"])
                time.sleep(0.05)

    t = threading.Thread(target=person, daemon=True)
    t.start()
    cfg = TrainConfig(env="deep-sea-treasure-v0", feedback="tradeoff", teacher="web", budget=4, server=srv.url,
                      token=ADMIN, out=str(tmp_path / "run"), progress=False, eval_episodes=1,
                      extra={"n_policies": 2, "policy_timesteps": 256, "final_timesteps": 0, "n_samples": 500,
                             "answer_timeout": 60.0})
    try:
        res = train(cfg)
    finally:
        stop.set()
        t.join(timeout=20)
    assert res["asked"] == 4 and res["feedback_used"] == 4
    post = json.loads((tmp_path / "run" / "posterior.json").read_text())
    assert post["pooled"]["answers"] == 4 and list(post["per_annotator"]) == ["alice"]
    assert clip_types == ["image/webp"]  # the server replayed the run's episode from its seed and actions
    local = FeedbackStore(tmp_path / "run" / "feedback.db")
    got = local.feedback(run_id=res["run_id"], kind="outcome")
    assert {f.annotator_id for f in got} == {"alice"} and {f.query_id for f in got} == set(answered)
    for f in got:  # each stored label is the one alice gave for that pair
        q = local.query(f.query_id)
        du = w @ (q.left - q.right)
        assert f.value == (0.5 if abs(du) < 1e-9 else float(du > 0))
    assert len(server_store.feedback(kind="outcome")) == 4
    local.close()
