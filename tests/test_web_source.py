"""WebSource: a training run posting queries to the app and polling people's answers, restart-safe."""

from __future__ import annotations

import time

import httpx
import pytest

from _web_helpers import ADMIN, free_port, headers, make_queries
from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.feedback.web_source import WebServerError, WebSource, WebSourceError
from rlhf_gym.store import FeedbackStore


@pytest.fixture
def server(live_web):
    return live_web


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


def test_a_server_that_is_down_is_an_error_after_retries_not_silence(tmp_path):
    qs = make_queries(run_id="run-9")
    src = WebSource(server=f"http://127.0.0.1:{free_port()}", token=ADMIN, run_id="run-9", timeout=0.5,
                    retries=2, backoff=0.05)
    t = time.perf_counter()
    with pytest.raises(WebServerError, match="could not reach .* gave up after 3 attempts"):
        src.post(qs["pair"])
    assert time.perf_counter() - t < 5 and len(src.errors) == 3 and src.pending == 2
    src.close()


def test_a_5xx_is_retried_with_backoff_and_then_reported(tmp_path):
    """A failing answers feed must stop the run with the server's message, never look like 'no answers'."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.url.path, time.monotonic()))
        if request.url.path == "/api/admin/queries":
            return httpx.Response(200, json={"added": [], "existing": []})
        return httpx.Response(500, json={"detail": "database is on fire"})

    src = WebSource(server="http://test", token=ADMIN, run_id="run-5", retries=3, backoff=0.05)
    src._http = httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler))
    src.post(make_queries(run_id="run-5")["pair"][:1])
    with pytest.raises(WebServerError, match="500 .*database is on fire.*gave up after 4 attempts"):
        src.poll()
    times = [t for p, t in calls if p == "/api/admin/answers"]
    assert len(times) == 4 and all(b - a >= 0.04 * 2**i for i, (a, b) in enumerate(zip(times, times[1:], strict=False)))
    # a server that recovers between retries is used normally
    flaky = iter([500, 503, 200])

    def recovering(request: httpx.Request) -> httpx.Response:
        code = next(flaky)
        return httpx.Response(code, json={"answers": [], "cursor": 0} if code == 200 else {"detail": "x"})

    src._http = httpx.Client(base_url="http://test", transport=httpx.MockTransport(recovering))
    src._unsent.clear()
    assert src.poll() == [] and len(src.errors) == 4 + 2
    src.close()


def test_training_reports_a_failing_server_as_an_error(tmp_path, capsys):
    """`rlhf-gym train --teacher web` against a server that answers 500: exit 1 with the message, no traceback."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from rlhf_gym.cli import main

    class Broken(BaseHTTPRequestHandler):
        def _fail(self) -> None:
            body = b'{"detail": "broken on purpose"}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _fail

        def log_message(self, *a) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        rc = main(["train", "--feedback", "evaluative", "--teacher", "web", "--env", "CartPole-v1",
                   "--server", f"http://127.0.0.1:{httpd.server_port}", "--token", ADMIN, "--budget", "4",
                   "--out", str(tmp_path / "run")])
    finally:
        httpd.shutdown()
    err = capsys.readouterr().err
    assert rc == 1 and "500" in err and "broken on purpose" in err and "Traceback" not in err


def test_wrong_token_is_a_clear_error(server):
    srv, _ = server
    src = WebSource(server=srv.url, token="not-the-admin-token", run_id="r")
    with pytest.raises(WebSourceError, match="401"):
        src.post(make_queries(run_id="r")["pair"][:1])
    with pytest.raises(ValueError, match="http"):
        WebSource(server="127.0.0.1:8000", token=ADMIN)


def test_the_run_is_warned_when_every_answer_is_a_skip(server):
    srv, _store = server
    qs = make_queries(run_id="run-s", n_steps=7)["step"]
    said: list[str] = []
    src = WebSource(server=srv.url, token=ADMIN, run_id="run-s", log=said.append)
    src.post(qs)
    for i, q in enumerate(qs[:4]):
        r = httpx.post(f"{srv.url}/api/feedback", headers=headers("alice"),
                       json={"query_id": q.id, "value": None, "client_key": f"s{i}"})
        assert r.status_code == 201
    assert len(src.poll()) == 4 and not any("skips" in m for m in said)  # 4 < 5: too early to tell
    httpx.post(f"{srv.url}/api/feedback", headers=headers("alice"),
               json={"query_id": qs[4].id, "value": None, "client_key": "s4"})
    src.poll()
    assert sum("all 5 answers" in m and "skips" in m for m in said) == 1
    httpx.post(f"{srv.url}/api/feedback", headers=headers("bob"),
               json={"query_id": qs[5].id, "value": None, "client_key": "s5"})
    src.poll()
    assert sum("skips" in m for m in said) == 1  # said once
    # a run whose people answer gets no such warning
    said2: list[str] = []
    src2 = WebSource(server=srv.url, token=ADMIN, run_id="run-s", log=said2.append)
    src2.post(qs)
    httpx.post(f"{srv.url}/api/feedback", headers=headers("bob"),
               json={"query_id": qs[6].id, "value": 1.0, "client_key": "s6"})
    assert len(src2.poll()) == 7 and said2 == []
    src.close()
    src2.close()


def test_answers_from_earlier_pages_survive_a_failing_later_page(tmp_path):
    """The cursor moves past each page as it is read: if a later page fails, the answers already read must
    come with the next poll, not be lost."""
    q = make_queries(run_id="run-6")["pair"][0]
    pages = iter([
        httpx.Response(200, json={"answers": [{"id": 1, "query_id": q.id, "annotator_id": "alice", "value": 1.0,
                                               "asked_at": 1.0, "answered_at": 2.0}], "cursor": 1}),
        httpx.Response(500, json={"detail": "down"}),
        httpx.Response(200, json={"answers": [], "cursor": 1}),
    ])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/admin/queries":
            return httpx.Response(200, json={"added": [q.id], "existing": []})
        return next(pages)

    src = WebSource(server="http://test", token=ADMIN, run_id="run-6", retries=0, backoff=0.01, page_size=1)
    src._http = httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler))
    src.post([q])
    with pytest.raises(WebServerError):
        src.poll()
    got = src.poll()
    assert [(f.annotator_id, f.query_id, f.value) for f in got] == [("alice", q.id, 1.0)]
    src.close()
