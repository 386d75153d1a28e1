"""`train --feedback evaluative --teacher web` end to end: a live app, a consenting person answering
the run's steps over HTTP, no --annotator given (issue 9: this path used to fail on its first post)."""

from __future__ import annotations

import threading
import time

import httpx

from _web_helpers import ADMIN, headers
from rlhf_gym.config import TrainConfig
from rlhf_gym.pipeline import train
from rlhf_gym.store import FeedbackStore


def test_evaluative_training_through_the_web_app(live_web, tmp_path):
    srv, _server_store = live_web
    answered: list[str] = []
    stop = threading.Event()

    def person() -> None:  # alice answers every step the run shows her: "correct" for pushing right
        with httpx.Client(base_url=srv.url, headers=headers("alice"), timeout=10) as c:
            while not stop.is_set():
                qs = c.get("/api/queries", params={"kind": "step", "limit": 5}).json()["queries"]
                for q in qs:
                    value = 1.0 if q["action"] == 1 else 0.0
                    r = c.post("/api/feedback", json={"query_id": q["id"], "value": value, "client_key": q["id"]})
                    assert r.status_code == 201, r.text
                    answered.append(q["id"])
                time.sleep(0.05)

    t = threading.Thread(target=person, daemon=True)
    t.start()
    cfg = TrainConfig(env="CartPole-v1", feedback="evaluative", learner="tamer", teacher="web", budget=6,
                      server=srv.url, token=ADMIN, out=str(tmp_path / "run"), progress=False, eval_episodes=1,
                      extra={"warmup_steps": 20, "wait_s": 60.0})
    try:
        res = train(cfg)
    finally:
        stop.set()
        t.join(timeout=10)
    assert res["feedback_used"] == 6 and res["asked"] >= 6
    local = FeedbackStore(tmp_path / "run" / "feedback.db")
    got = local.feedback(run_id=res["run_id"])
    assert {f.annotator_id for f in got} == {"alice"}  # recorded under the person who answered
    assert {f.query_id for f in got} <= set(answered)
    assert set(local.lineage(res["model_id"])) == {int(f.id) for f in got if f.value is not None}
    local.close()
