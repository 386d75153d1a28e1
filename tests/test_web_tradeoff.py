"""The trade-off page's API: open outcome comparisons, clips replayed on the server, answers, access."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from _web_helpers import add_people, headers, post_queries, tmp_app
from rlhf_gym.types import OutcomeQuery
from rlhf_gym.web.clips import CLIP_FPS

pytest.importorskip("mo_gymnasium")

ENV = "deep-sea-treasure-v0"


def clip_ms(im: Image.Image) -> int:
    """An animated image's running time in milliseconds."""
    total = 0
    for i in range(im.n_frames):
        im.seek(i)
        im.load()
        total += im.info["duration"]
    return total


def outcome_queries(run_id: str = "run-t", n: int = 2, seed: int = 0, with_actions: bool = True) -> list[OutcomeQuery]:
    """Outcome queries over seeded random episodes of deep-sea-treasure (returns, seeds and actions)."""
    from rlhf_gym.morl.envs import ScalarisedReward, make_vector_env
    from rlhf_gym.rollouts import rollout

    env = ScalarisedReward(make_vector_env(ENV, seed=seed), np.zeros(2))
    eps = []
    for i in range(2 * n):
        traj = rollout(env, lambda _o: env.action_space.sample(), seed=seed + i)
        eps.append((env.episode_returns[-1], seed + i, [int(a) for a in traj.acts]))
    env.close()
    out = []
    for i in range(n):
        (lv, ls, la), (rv, rs, ra) = eps[2 * i], eps[2 * i + 1]
        meta = {"left": {"seed": ls, "actions": la}, "right": {"seed": rs, "actions": ra}} if with_actions else {}
        out.append(OutcomeQuery.make(lv, rv, ("treasure", "time"), run_id=run_id, meta=meta))
    return out


@pytest.fixture
def site(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store)
    c = TestClient(app)
    qs = outcome_queries()
    assert post_queries(c, qs, run_id="run-t", assigned_to="alice", env_id=ENV).status_code == 200
    yield store, c, qs
    store.close()


def test_open_outcomes_show_returns_and_clips_to_their_annotator_only(site):
    store, c, qs = site
    out = c.get("/api/outcomes", headers=headers("alice")).json()
    assert [q["id"] for q in out["queries"]] == [q.id for q in qs]
    q0 = out["queries"][0]
    assert q0["objectives"] == ["treasure", "time"] and q0["env_id"] == ENV
    assert q0["left"] == pytest.approx(qs[0].left.tolist()) and q0["right"] == pytest.approx(qs[0].right.tolist())
    assert "meta" not in q0 and "actions" not in str(q0)  # the page gets what it shows, not the episode's record
    assert out["progress"]["open_by_kind"]["outcome"] == 2
    assert c.get("/api/outcomes", headers=headers("bob")).json()["queries"] == []
    # both clips: animated WebP, one frame per state, the same frame count on both sides (they loop in step)
    ims = []
    for side in ("left", "right"):
        r = c.get(q0["clips"][side], headers=headers("alice"))
        assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
        ims.append(Image.open(io.BytesIO(r.content)))
    n = max(len(qs[0].meta["left"]["actions"]), len(qs[0].meta["right"]["actions"])) + 1
    assert [clip_ms(im) for im in ims] == [n * 1000 // CLIP_FPS] * 2  # (WebP merges repeated frames)
    assert c.get(q0["clips"]["left"], headers=headers("bob")).status_code == 403
    assert c.get(f"/api/outcomes/{qs[0].id}/clip/up", headers=headers("alice")).status_code == 422
    assert c.get("/api/outcomes/nope/clip/left", headers=headers("alice")).status_code == 404


def test_outcome_answers_are_stored_and_bad_values_refused(site):
    store, c, qs = site
    r = c.post("/api/feedback", json={"query_id": qs[0].id, "value": 0.3, "client_key": "k0"}, headers=headers("alice"))
    assert r.status_code == 422 and "0.5" in r.json()["detail"]
    assert store.feedback(kind="outcome") == []
    for q, v, k in ((qs[0], 0.5, "k1"), (qs[1], None, "k2")):
        r = c.post("/api/feedback", json={"query_id": q.id, "value": v, "client_key": k}, headers=headers("alice"))
        assert r.status_code == 201, r.text
    got = {f.query_id: f.value for f in store.feedback(kind="outcome", include_skipped=True)}
    assert got == {qs[0].id: 0.5, qs[1].id: None}
    assert c.get("/api/outcomes", headers=headers("alice")).json()["queries"] == []


def test_without_an_episode_the_page_gets_the_returns_alone(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store)
    c = TestClient(app)
    [q] = outcome_queries(n=1, with_actions=False)
    # a terminal run's clip path is not a file the server reads
    q = OutcomeQuery(q.id, q.run_id, q.created_at, left=q.left, right=q.right, objectives=q.objectives,
                     left_clip="/etc/passwd", right_clip="/etc/passwd")
    assert post_queries(c, [q], run_id="run-t", env_id=ENV).status_code == 200
    [d] = c.get("/api/outcomes", headers=headers("bob")).json()["queries"]
    assert d["clips"] is None and d["left"] == pytest.approx(q.left.tolist())
    r = c.get(f"/api/outcomes/{q.id}/clip/left", headers=headers("bob"))
    assert r.status_code == 404 and "compare the returns" in r.json()["detail"]
    assert c.get("/tradeoff").status_code == 200
    store.close()
