"""WebSource: a training run posting queries to the app and polling people's answers, restart-safe."""

from __future__ import annotations

import time

import httpx
import pytest

from _web_helpers import ADMIN, LiveServer, add_people, free_port, headers, make_queries, tmp_app
from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.feedback.web_source import WebSource, WebSourceError
from rlhf_gym.store import FeedbackStore


@pytest.fixture
def server(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store)
    srv = LiveServer(app)
    yield srv, store
    srv.stop()
    store.close()


def answer(srv, who, qid, value, key):
    r = httpx.post(f"{srv.url}/api/feedback", headers=headers(who),
                   json={"query_id": qid, "value": value, "client_key": key})
    assert r.status_code == 201, r.text
    return r.json()["feedback_id"]


def test_answers_flow_to_the_run_once_even_across_a_restart(server, tmp_path):
    srv, server_store = server
    local = FeedbackStore(tmp_path / "run" / "feedback.db")
    local.add_run("run-7", config={"env": "CartPole-v1"})
    qs = make_queries(run_id="run-7")
    src = WebSource(server=srv.url, token=ADMIN, store=local, run_id="run-7", annotator_id=None)
    assert isinstance(src, FeedbackSource) and not src.simulated and src.env_id == "CartPole-v1"
    t = time.perf_counter()
    src.post(qs["pair"] + qs["step"])
    assert time.perf_counter() - t < 2.0  # posting never waits for a person
    assert src.poll(step=10) == [] and src.pending == 5
    answer(srv, "alice", qs["pair"][0].id, 1.0, "a1")
    answer(srv, "bob", qs["pair"][0].id, 0.0, "b1")  # pool queries may be answered by several people
    answer(srv, "alice", qs["step"][1].id, 0.0, "a2")
    got = src.poll(step=11)
    assert sorted((f.annotator_id, f.query_id, f.value) for f in got) == sorted(
        [("alice", qs["pair"][0].id, 1.0), ("bob", qs["pair"][0].id, 0.0), ("alice", qs["step"][1].id, 0.0)])
    assert all(f.id is not None for f in got)  # committed to the local store before being returned
    assert len(local.feedback(run_id="run-7")) == 3 and src.pending == 3
    assert src.poll(step=12) == []
    src.close()

    # the run restarts: same local store, queries posted again, an answer arrived while it was down
    answer(srv, "alice", qs["pair"][1].id, 0.5, "a3")
    src2 = WebSource(server=srv.url, token=ADMIN, store=local, run_id="run-7")
    src2.post(qs["pair"] + qs["step"])
    assert len(server_store.queries(run_id="run-7")) == 5  # nothing posted twice
    got2 = src2.poll(step=0)
    assert [(f.annotator_id, f.query_id, f.value) for f in got2] == [("alice", qs["pair"][1].id, 0.5)]
    assert len(local.feedback(run_id="run-7")) == 4 and src2.poll() == []
    assert {a.id for a in local.annotators()} >= {"alice", "bob"}
    src2.close()


def test_queries_assigned_to_one_annotator(server, tmp_path):
    srv, server_store = server
    qs = make_queries(run_id="run-8")
    src = WebSource(server=srv.url, token=ADMIN, run_id="run-8", annotator_id="alice")
    src.post(qs["pair"])
    bob = httpx.get(f"{srv.url}/api/queries?kind=pair", headers=headers("bob")).json()["queries"]
    alice = httpx.get(f"{srv.url}/api/queries?kind=pair", headers=headers("alice")).json()["queries"]
    assert bob == [] and {q["id"] for q in alice} == {q.id for q in qs["pair"]}
    answer(srv, "alice", qs["pair"][0].id, 1.0, "k")
    [fb] = src.poll()
    assert fb.annotator_id == "alice" and src.pending == 1
    src.close()


def test_a_server_that_is_down_never_blocks_the_run(tmp_path):
    qs = make_queries(run_id="run-9")
    src = WebSource(server=f"http://127.0.0.1:{free_port()}", token=ADMIN, run_id="run-9", timeout=0.5)
    t = time.perf_counter()
    src.post(qs["pair"])
    assert src.poll() == [] and src.pending == 2 and src.last_error
    assert time.perf_counter() - t < 5
    src.close()


def test_wrong_token_is_a_clear_error(server):
    srv, _ = server
    src = WebSource(server=srv.url, token="not-the-admin-token", run_id="r")
    with pytest.raises(WebSourceError, match="401"):
        src.post(make_queries(run_id="r")["pair"][:1])
    with pytest.raises(ValueError, match="http"):
        WebSource(server="127.0.0.1:8000", token=ADMIN)
