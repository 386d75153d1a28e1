"""DAgger's "which action here?" questions in the annotation app: the query carries a replay (seed and the
episode's actions so far), the server draws the state from it, answers are checked against the env's
actions, access is the same as for every other kind, and continuous-action tasks are refused."""

from __future__ import annotations

import io
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from _web_helpers import ADMIN, LiveServer, add_people, admin_headers, headers, post_queries, tmp_app
from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.feedback.web_source import WebSource, WebSourceError
from rlhf_gym.learners.dagger import dagger
from rlhf_gym.types import ActionQuery, Query
from rlhf_gym.web.clips import Renderer, encode_png

ENV = "CartPole-v1"


def lean_rule(obs) -> int:
    """A simple CartPole teacher: push the cart the way the pole is falling."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def visited_states(n: int, seed: int = 0, env_id: str = ENV, run_id: str = "run-d") -> list[ActionQuery]:
    """Action queries at the states of a seeded random episode, each with its seed and actions so far."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    acts: list = []
    out = []
    for t in range(n):
        out.append(ActionQuery.make(obs, env_id, step=t, episode=0, run_id=run_id, seed=seed, actions=acts))
        a = env.action_space.sample()
        acts.append(a.tolist() if isinstance(a, np.ndarray) else int(a))
        obs, _r, term, trunc, _ = env.step(a)
        if term or trunc:
            break
    env.close()
    return out


def act(client, who, qid, action=None, key=None, value=None, **extra):
    body = {"query_id": qid, "value": value, "client_key": key or f"{who}-{qid}-{action}", **extra}
    if action is not None:
        body["data"] = {"action": action}
    return client.post("/api/feedback", json=body, headers=headers(who))


@pytest.fixture
def site(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store)
    c = TestClient(app)
    qs = visited_states(4)
    assert post_queries(c, qs, run_id="run-d", assigned_to="alice").status_code == 200
    yield store, c, qs
    store.close()


# -- the query and the replay ----------------------------------------------------------------------------
def test_action_query_round_trips_and_old_payloads_still_load():
    q = ActionQuery.make(np.arange(4.0), ENV, step=9, episode=2, run_id="r", seed=11, actions=[0, 1, np.int64(1)])
    back = Query.from_dict(q.to_dict())
    assert isinstance(back, ActionQuery) and back.seed == 11 and back.actions == (0, 1, 1)
    assert back.payload() == q.payload()
    old = {"id": "q-old", "kind": "action", "run_id": None, "created_at": 1.0,
           "payload": {"obs": [0.0, 0.1, 0.2, 0.3], "env_id": ENV, "step": 3, "episode": 0, "frame_path": None}}
    legacy = Query.from_dict(old)
    assert isinstance(legacy, ActionQuery) and legacy.seed is None and legacy.actions is None
    with pytest.raises(ValueError):
        Query.from_dict({**old, "payload": {**old["payload"], "actions": "01"}})


class _Rule(FeedbackSource):
    """In-process teacher answering every action query by ``rule``; records what it was asked."""

    def __init__(self, rule=lean_rule) -> None:
        super().__init__("rule")
        self.rule = rule
        self.asked: list[ActionQuery] = []
        self._ready: list = []

    def _submit(self, queries):
        for q in queries:
            self.asked.append(q)
            self._ready.append(self._record(q, None, data={"action": self.rule(q.obs)}))

    def _collect(self, step):
        out, self._ready = self._ready, []
        return out


def test_dagger_queries_replay_to_the_state_they_ask_about():
    src = _Rule(lambda o: 1 - lean_rule(o))  # a teacher that drops the pole: many short episodes
    dagger(gym.make(ENV), src, 40, discrete=True, n_actions=2, rounds=2, seed=3, env_id=ENV)
    assert len(src.asked) == 40 and len({q.episode for q in src.asked}) >= 2  # several episodes
    env = gym.make(ENV)
    for q in src.asked:
        obs, _ = env.reset(seed=q.seed)
        for a in q.actions:
            obs, *_ = env.step(a)
        assert np.allclose(obs, q.obs, atol=1e-6), q.step
    by_episode: dict = {}
    for q in src.asked:
        by_episode.setdefault(q.episode, []).append(q)
    for qs in by_episode.values():  # one episode: one reset seed, each query's actions a prefix of the next's
        assert len({q.seed for q in qs}) == 1
        for a, b in zip(qs, qs[1:], strict=False):
            assert len(a.actions) < len(b.actions) and b.actions[:len(a.actions)] == a.actions


def test_the_server_draws_the_replayed_state_and_falls_back_when_the_replay_drifts():
    q = visited_states(8)[-1]
    r = Renderer()
    frame, how = r.state_frame(ENV, q.obs, q.seed, q.actions)
    assert how == "replay"
    env = gym.make(ENV, render_mode="rgb_array")  # the same state by hand
    env.reset(seed=q.seed)
    for a in q.actions:
        env.step(a)
    assert np.array_equal(frame, env.render())
    env.close()
    _f, how = r.state_frame(ENV, q.obs, q.seed + 1, q.actions)  # another episode: the replay is not kept
    assert how == "state"
    _f, how = r.state_frame(ENV, q.obs)  # an old query without seed and actions
    assert how == "state"
    _f, how = r.state_frame("Nope-v0", q.obs, q.seed, q.actions)
    assert how == "chart"
    r.close()


# -- the page's API --------------------------------------------------------------------------------------
def test_open_action_queries_show_buttons_task_and_a_replayed_frame(site):
    store, c, qs = site
    out = c.get("/api/queries?kind=action&limit=10", headers=headers("alice")).json()
    got = out["queries"]
    assert [q["id"] for q in got] == [q.id for q in qs]
    first = got[0]
    assert first["env_id"] == ENV and "pole" in first["task"].lower() and first["refused"] is None
    assert first["actions"] == [{"action": 0, "label": "push cart left", "key": "ArrowLeft"},
                                {"action": 1, "label": "push cart right", "key": "ArrowRight"}]
    assert [q["episode_step"] for q in got] == [0, 1, 2, 3]
    assert out["progress"]["open_by_kind"]["action"] == 4
    r = c.get(got[2]["frame"], headers=headers("alice"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    env = gym.make(ENV, render_mode="rgb_array")
    env.reset(seed=qs[2].seed)
    for a in qs[2].actions:
        env.step(a)
    assert r.content == encode_png(env.render())  # the state the query asks about, replayed
    env.close()
    assert Image.open(io.BytesIO(r.content)).width > 100
    page = c.get("/dagger")
    assert page.status_code == 200 and "/static/dagger.js" in page.text
    assert c.get("/static/dagger.js").status_code == 200
    assert 'href="/dagger"' in c.get("/").text


def test_an_answer_is_an_action_of_that_env_and_anything_else_is_a_422_naming_the_field(site):
    store, c, qs = site
    q = qs[0]
    cases = [
        ({"data": {"action": 2}}, "data.action"),      # CartPole has actions 0 and 1
        ({"data": {"action": -1}}, "data.action"),
        ({"data": {"action": "1"}}, "data.action"),
        ({"data": {"action": 1.5}}, "data.action"),
        ({"data": {"action": 1.0}}, "data.action"),    # an int, not a float that looks like one
        ({"data": {"action": True}}, "data.action"),
        ({"data": {"action": 1, "why": "x"}}, "data.why"),
        ({"value": 1.0, "data": {"action": 1}}, "value"),
        ({"value": 0.0}, "value"),
    ]
    for i, (extra, field) in enumerate(cases):
        body = {"query_id": q.id, "value": None, "client_key": f"bad-{i}", **extra}
        r = c.post("/api/feedback", json=body, headers=headers("alice"))
        assert r.status_code == 422 and field in r.json()["detail"], (extra, r.text)
    assert store.feedback(include_skipped=True) == []
    assert act(c, "alice", q.id, 1).status_code == 201
    assert act(c, "alice", q.id, 0, key="again").status_code == 409  # one answer per person
    assert act(c, "alice", qs[1].id, None).status_code == 201       # "can't tell": a skip
    got = {f.query_id: f for f in store.feedback(include_skipped=True)}
    assert got[q.id].data == {"action": 1} and got[q.id].value is None and not got[q.id].skipped
    assert got[qs[1].id].skipped
    p = c.get("/api/me", headers=headers("alice")).json()["progress"]
    assert p["given"] == 1 and p["open_by_kind"]["action"] == 2  # the skip is not a label given


def test_another_annotator_neither_sees_nor_answers_and_consent_comes_first(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store, consent=False)
    c = TestClient(app)
    mine, open_q = visited_states(2)
    assert post_queries(c, [mine], run_id="run-d", assigned_to="alice").status_code == 200
    assert post_queries(c, [open_q], run_id="run-d").status_code == 200
    bob = {q["id"] for q in c.get("/api/queries?kind=action", headers=headers("bob")).json()["queries"]}
    assert bob == {open_q.id}
    assert c.get(f"/api/frames/{mine.id}", headers=headers("bob")).status_code == 403
    r = act(c, "bob", mine.id, 0)
    assert r.status_code == 403 and "not assigned" in r.json()["detail"]
    r = act(c, "alice", mine.id, 0)
    assert r.status_code == 403 and "consent" in r.json()["detail"]  # no consent yet: nothing stored
    assert store.feedback(include_skipped=True) == []
    for who in ("alice", "bob"):
        v = c.get("/api/me", headers=headers(who)).json()["consent"]["version"]
        c.post("/api/consent", json={"agree": True, "version": v}, headers=headers(who))
    assert act(c, "alice", mine.id, 0).status_code == 201
    assert act(c, "bob", open_q.id, 1).status_code == 201
    assert act(c, "alice", open_q.id, 0).status_code == 201  # open to everyone: each person answers once
    assert c.get("/api/queries?kind=action", headers=headers("alice")).json()["queries"] == []
    assert sorted((f.annotator_id, f.data["action"]) for f in store.feedback()) == [("alice", 0), ("alice", 0),
                                                                                      ("bob", 1)]


def test_continuous_and_unknown_environments_are_refused_with_a_message(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store)
    c = TestClient(app)
    pend = visited_states(2, env_id="Pendulum-v1", run_id="run-p")
    r = post_queries(c, pend[:1], run_id="run-p", env_id="Pendulum-v1")
    assert r.status_code == 422 and "continuous" in r.json()["detail"] and "queries[0]" in r.json()["detail"]
    for env_id in ("NoSuchEnv-v0", "os:system"):
        q = ActionQuery.make(np.zeros(4), env_id, seed=0, actions=[], run_id="run-x")
        r = post_queries(c, [q], run_id="run-x", env_id=ENV)
        assert r.status_code == 422 and env_id in r.json()["detail"], r.text
    assert store.queries() == []  # nothing of a refused post is stored
    # a continuous query already in the store (put there by hand): the page says why, answers are refused
    store.add_queries(pend[1:], run_id="run-p")
    d = c.get("/api/queries?kind=action", headers=headers("alice")).json()["queries"][0]
    assert d["actions"] is None and "continuous" in d["refused"]
    r = act(c, "alice", pend[1].id, 0)
    assert r.status_code == 422 and "continuous" in r.json()["detail"]
    assert act(c, "alice", pend[1].id, None).status_code == 201  # it can still be skipped


def test_a_continuous_dagger_run_stops_with_the_servers_message(tmp_path, capsys):
    from rlhf_gym.cli import main

    store, app = tmp_app(tmp_path)
    add_people(store)
    srv = LiveServer(app)
    try:
        src = WebSource(srv.url, ADMIN, run_id="run-p", env_id="Pendulum-v1", retries=0)
        with pytest.raises(WebSourceError, match="continuous"):
            src.post(visited_states(1, env_id="Pendulum-v1", run_id="run-p"))
        src.close()
        rc = main(["train", "--env", "Pendulum-v1", "--feedback", "demonstration", "--learner", "dagger",
                   "--teacher", "web", "--server", srv.url, "--token", ADMIN, "--budget", "3",
                   "--out", str(tmp_path / "run"), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 1 and "continuous actions" in err and "422" in err
        assert store.queries(kind="action") == []
    finally:
        srv.stop()
        store.close()


def test_dagger_over_http_gets_the_labels_a_person_gives(tmp_path):
    """WebSource posts DAgger's queries to a live app; a person answers over HTTP; DAgger trains on them."""
    store, app = tmp_app(tmp_path)
    add_people(store)
    srv = LiveServer(app)
    stop = threading.Event()
    given: dict[str, int | None] = {}

    def person() -> None:
        import httpx

        with httpx.Client(base_url=srv.url, headers=headers("alice"), timeout=10) as h:
            while not stop.is_set():
                for q in h.get("/api/queries", params={"kind": "action", "limit": 5}).json()["queries"]:
                    assert h.get(q["frame"]).status_code == 200
                    a = None if not given else lean_rule(q["obs"])  # the first one: "can't tell"
                    body = {"query_id": q["id"], "value": None, "client_key": q["id"]}
                    if a is not None:
                        body["data"] = {"action": a}
                    assert h.post("/api/feedback", json=body).status_code == 201
                    given[q["id"]] = a
                time.sleep(0.02)

    t = threading.Thread(target=person, daemon=True)
    t.start()
    src = WebSource(srv.url, ADMIN, run_id="run-w", env_id=ENV)
    try:
        res = dagger(gym.make(ENV), src, 12, discrete=True, n_actions=2, rounds=2, seed=0, env_id=ENV,
                     run_id="run-w")
    finally:
        stop.set()
        t.join(timeout=10)
        src.close()
        srv.stop()
    assert res.labels_asked == 12 and res.labels_used == 11  # the skip counted against the budget
    assert len(given) == 12 and sum(a is None for a in given.values()) == 1
    sq = {q.id: q for q in (store.query(qid) for qid in given)}
    assert all(sq[qid].seed is not None and sq[qid].actions is not None for qid in given)
    policy = res.bc.policy()
    labelled = [(sq[qid].obs, a) for qid, a in given.items() if a is not None]
    assert sum(int(policy(o)) == a for o, a in labelled) >= 0.8 * len(labelled)  # it learnt what she said
    store.close()


def test_admin_token_is_needed_to_post_action_queries(site):
    _store, c, _qs = site
    q = visited_states(1, seed=5)[0]
    body = {"run_id": "run-d", "queries": [q.to_dict()]}
    assert c.post("/api/admin/queries", json=body, headers=headers("alice")).status_code == 403
    assert c.post("/api/admin/queries", json=body, headers=admin_headers()).json()["added"] == [q.id]
