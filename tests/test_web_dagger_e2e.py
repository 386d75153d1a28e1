"""`rlhf-gym train --feedback demonstration --learner dagger --teacher web` end to end: a live app and a
consenting person who labels each state DAgger visits with a simple CartPole rule over HTTP (the page's
calls), no --annotator given. The policy the run saves must act like her rule."""

from __future__ import annotations

import threading
import time

import gymnasium as gym
import httpx
import numpy as np

from _web_helpers import ADMIN, headers
from rlhf_gym.cli import main
from rlhf_gym.runs import RunDir
from rlhf_gym.store import FeedbackStore
from test_web_dagger import lean_rule

BUDGET = 60


def test_dagger_run_learns_the_labels_a_person_gives_in_the_web_app(live_web, tmp_path, capsys):
    srv, server_store = live_web
    given: dict[str, int] = {}
    frames: list[str] = []
    stop = threading.Event()

    def person() -> None:
        with httpx.Client(base_url=srv.url, headers=headers("alice"), timeout=20) as c:
            while not stop.is_set():
                for q in c.get("/api/queries", params={"kind": "action", "limit": 5}).json()["queries"]:
                    if len(frames) < 3:
                        frames.append(c.get(q["frame"]).headers["content-type"])
                    assert [a["action"] for a in q["actions"]] == [0, 1]
                    a = lean_rule(q["obs"])
                    r = c.post("/api/feedback", json={"query_id": q["id"], "value": None, "data": {"action": a},
                                                      "client_key": q["id"]})
                    assert r.status_code == 201, r.text
                    given[q["id"]] = a
                time.sleep(0.02)

    t = threading.Thread(target=person, daemon=True)
    t.start()
    out = tmp_path / "run"
    try:
        rc = main(["train", "--env", "CartPole-v1", "--feedback", "demonstration", "--learner", "dagger",
                   "--teacher", "web", "--server", srv.url, "--token", ADMIN, "--budget", str(BUDGET),
                   "--out", str(out), "--eval-episodes", "5", "--no-progress", "--set", "rounds=3"])
    finally:
        stop.set()
        t.join(timeout=20)
    assert rc == 0, capsys.readouterr().err
    assert f"({BUDGET} answers used)" in capsys.readouterr().out
    assert len(given) == BUDGET and frames == ["image/png"] * 3
    assert len(server_store.feedback(kind="action")) == BUDGET
    local = FeedbackStore(out / "feedback.db")
    got = local.feedback(kind="action")
    assert {f.annotator_id for f in got} == {"alice"} and {f.query_id: f.data["action"] for f in got} == given
    (model,) = [m for m in local.models() if m.kind == "policy"]
    assert set(local.lineage(model.id)) == {int(f.id) for f in got}  # withdrawing alice flags this policy
    local.close()
    # the saved policy acts as she labelled: on states of fresh random episodes it mostly agrees with her rule
    policy = RunDir(out).load_policy()
    env = gym.make("CartPole-v1")
    env.action_space.seed(7)
    states = []
    for seed in range(30):
        obs, _ = env.reset(seed=1000 + seed)
        done = False
        while not done:
            states.append(obs)
            obs, _r, term, trunc, _ = env.step(env.action_space.sample())
            done = term or trunc
    agree = np.mean([int(policy(s)) == lean_rule(s) for s in states])
    assert agree >= 0.85, agree
    # and it balances the pole far longer than random actions do from the same starts
    def mean_return(act) -> float:
        rets = []
        for seed in range(5):
            obs, _ = env.reset(seed=2000 + seed)
            ret, done = 0.0, False
            while not done:
                obs, r, term, trunc, _ = env.step(act(obs))
                ret, done = ret + r, term or trunc
            rets.append(ret)
        return float(np.mean(rets))

    trained, chance = mean_return(lambda o: int(policy(o))), mean_return(lambda _o: env.action_space.sample())
    env.close()
    assert trained >= 2 * chance and trained >= 50, (trained, chance)
