"""The label path's in-memory checks: fast when nothing changed, and every change takes effect at once.

The changes are made by another process (an owner's CLI command, another server worker): the cache
in the server's process cannot see them, so only the generation check on the audit log can.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from _web_helpers import (
    POLICY,
    TOKENS,
    add_people,
    drop_pg,
    headers,
    make_queries,
    pg_database,
    post_queries,
    tmp_app,
)
from rlhf_gym.store import FeedbackStore
from rlhf_gym.store import errors as E
from rlhf_gym.types import Feedback

PG_URL = os.environ.get("RLHF_GYM_TEST_PG_URL")
SRC = str(Path(__file__).resolve().parents[1] / "src")

#: a second process holding its own store handle: runs one change per line of stdin, answers "ok"
_OTHER = """
import sys
from rlhf_gym.store import FeedbackStore
from rlhf_gym.governance.consent import FeedbackPolicy
s = FeedbackStore(sys.argv[1]); p = FeedbackPolicy()
for line in sys.stdin:
    what, who = line.split()
    if what in ("agree", "decline"):
        s.record_consent(who, p.consent_version, p.purpose + "\\n" + p.consent_text, what == "agree")
    elif what == "revoke":
        s.revoke_invite(who, reason="test")
    elif what == "withdraw":
        s.withdraw_annotator(who, reason="test")
    print("ok", flush=True)
"""


class Other:
    """Another process changing the store (started once; each change is one line)."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.p = subprocess.Popen([sys.executable, "-c", _OTHER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)

    def do(self, what: str, who: str) -> None:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(f"{what} {who}\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "ok"

    def close(self) -> None:
        assert self.p.stdin
        self.p.stdin.close()
        self.p.wait(30)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "web.db")
        return
    if not PG_URL:
        pytest.skip("RLHF_GYM_TEST_PG_URL not set")
    u, eng, name = pg_database(PG_URL)
    yield u
    drop_pg(eng, name)


def _label(c: TestClient, who: str, qid: str, key: str, value: float = 1.0):
    return c.post("/api/feedback", headers=headers(who), json={"query_id": qid, "value": value, "client_key": key})


def test_changes_by_another_process_take_effect_at_once(url, tmp_path):
    store, app = tmp_app(tmp_path, FeedbackStore(url))
    add_people(store)
    c = TestClient(app)
    steps = make_queries(n_pairs=0, n_steps=9)["step"]
    post_queries(c, steps[:8])
    post_queries(c, steps[8:], assigned_to="bob")
    other = Other(url)
    try:
        q = iter(s.id for s in steps[:8])
        # warm: alice's credential, standing and the queries are now in memory
        assert _label(c, "alice", next(q), "a1").status_code == 201
        assert c.get("/api/me", headers=headers("alice")).status_code == 200
        assert _label(c, "alice", steps[8].id, "a2").status_code == 403  # bob's query, also from memory

        other.do("decline", "alice")
        r = _label(c, "alice", next(q), "a3")
        assert r.status_code == 403 and "declined" in r.json()["detail"]
        other.do("agree", "alice")
        assert _label(c, "alice", next(q), "a4").status_code == 201  # a cached refusal does not linger either

        assert _label(c, "bob", next(q), "b1").status_code == 201
        assert c.get("/api/me", headers=headers("bob")).status_code == 200
        other.do("withdraw", "bob")
        assert c.get("/api/me", headers=headers("bob")).status_code == 401  # a read sees it at once too
        assert _label(c, "bob", next(q), "b2").status_code in (401, 403)

        assert _label(c, "alice", next(q), "a5").status_code == 201  # her credential is in memory again
        other.do("revoke", "alice")
        r = _label(c, "alice", next(q), "a6")
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
        assert c.get("/api/me", headers=headers("alice")).status_code == 401
    finally:
        other.close()
    keys = sorted(fb_key(store, f.id) for f in store.feedback(include_withdrawn=True))
    assert keys == ["a1", "a4", "a5", "b1"]
    assert store.verify_audit().ok
    store.close()


def fb_key(store: FeedbackStore, fid: int | None) -> str:
    from sqlalchemy import select

    from rlhf_gym.store.schema import FeedbackRow

    with store.session() as s:
        return s.execute(select(FeedbackRow.client_key).where(FeedbackRow.id == fid)).scalar_one()


def test_a_label_with_nothing_changed_reads_no_person_or_query(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store)
    c = TestClient(app)
    steps = make_queries(n_pairs=0, n_steps=4)["step"]
    post_queries(c, steps)
    for i in range(2):  # the first batch starts the generation (and drops what was read before it)
        assert _label(c, "alice", steps[i].id, f"k{i}").status_code == 201
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, stmt, *_a: seen.append(stmt))
    assert _label(c, "alice", steps[2].id, "k2").status_code == 201
    tables = " ".join(seen).lower()
    assert seen and "from annotators" not in tables and "from consents" not in tables
    assert "from queries" not in tables and "from sessions" not in tables and "queries.payload" not in tables
    assert len(seen) <= 6  # lock, generation + head, earlier answers, insert, audit insert, audit head
    assert store.feedback()[-1].data == {"query_step": steps[2].step, "episode": steps[2].episode}


def test_store_errors_carry_their_http_status(tmp_path):
    assert (E.UnknownQuery("q").http_status, E.NotAssigned("q", "a").http_status, E.Withdrawn("a").http_status) == (
        404, 403, 403)
    assert E.ConsentError("x").http_status == 403 and E.StoreError("x").http_status == 400
    store, app = tmp_app(tmp_path)
    web = app.state.web
    fb = Feedback("q", "a", 1.0, 0.0, 1.0)
    # the status follows the type, whatever the message says
    assert web._http_error(E.Withdrawn("unknown query"), fb).status_code == 403
    assert web._http_error(E.UnknownQuery("withdrawn"), fb).status_code == 404
    assert web._http_error(RuntimeError("db down"), fb).status_code == 503
    store.close()


def test_add_feedback_follows_the_batch_rules(tmp_path):
    store = FeedbackStore(tmp_path / "s.db", consent_version=POLICY.consent_version)
    add_people(store)
    q = make_queries(n_pairs=0, n_steps=2)["step"]
    store.add_queries(q[:1])
    store.add_queries(q[1:], assigned_to="bob")
    first = store.add_feedback(Feedback(q[0].id, "alice", 1.0, 0.0, 1.0), client_key="k")
    assert store.add_feedback(Feedback(q[0].id, "alice", 0.0, 0.0, 2.0), client_key="k").id == first.id  # a resend
    with pytest.raises(E.NotAssigned):
        store.add_feedback(Feedback(q[1].id, "alice", 1.0, 0.0, 1.0))
    with pytest.raises(E.UnknownQuery):
        store.add_feedback(Feedback("nope", "alice", 1.0, 0.0, 1.0))
    with pytest.raises(E.AlreadyAnswered):
        store.add_feedback(Feedback(q[0].id, "alice", 1.0, 0.0, 1.0), client_key="other")
    store.withdraw_annotator("alice")
    with pytest.raises(E.Withdrawn):
        store.add_feedback(Feedback(q[0].id, "alice", 1.0, 0.0, 1.0), client_key="k2")
    assert len(store.feedback(include_withdrawn=True)) == 1
    store.close()


def test_the_answers_feed_reads_consents_once_for_a_page(tmp_path):
    store = FeedbackStore(tmp_path / "s.db", consent_version=POLICY.consent_version)
    q = make_queries(n_pairs=0, n_steps=6)["step"]
    store.add_queries(q)
    for i in range(6):
        store.add_annotator(f"p{i}", kind="human")
        store.record_consent(f"p{i}", f"v{i}", "text", True)
        store.consent_version = f"v{i}"
        store.add_feedback(Feedback(q[i].id, f"p{i}", 1.0, 0.0, 1.0), client_key=f"k{i}")
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, stmt, *_a: seen.append(stmt))
    page = store.answers_since(None, 0, 100)["answers"]
    assert [a["consent_version"] for a in page] == [f"v{i}" for i in range(6)]
    assert sum("from consents" in s.lower() for s in seen) == 1
    store.close()



def test_a_worker_that_did_not_receive_the_queries_reads_them_once_per_person(url, tmp_path):
    """Queries posted to one server process: another (a second worker, or after a restart) reads a
    person's open queries with their first label, not one statement per label."""
    store, app = tmp_app(tmp_path, FeedbackStore(url))
    add_people(store)
    steps = make_queries(n_pairs=0, n_steps=6)["step"]
    post_queries(TestClient(app), steps[:4])
    post_queries(TestClient(app), steps[4:], assigned_to="bob")
    other_store, other_app = tmp_app(tmp_path / "w2", FeedbackStore(url))  # the second worker: nothing in memory
    c = TestClient(other_app)
    assert other_store.access.query(steps[0].id) is None
    assert _label(c, "alice", steps[0].id, "k0").status_code == 201
    cache = other_store.access
    assert all(cache.query(s.id) is not None for s in steps[:4])  # her other open queries came with the first
    assert cache.query(steps[4].id) is None  # bob's are not hers to answer: not read for her
    seen: list[str] = []
    event.listen(other_store.engine, "before_cursor_execute", lambda _c, _cur, stmt, *_a: seen.append(stmt))
    assert _label(c, "alice", steps[1].id, "k1").status_code == 201
    assert _label(c, "alice", steps[4].id, "k4").status_code == 403  # bob's query: still refused
    assert sum("from queries" in s.lower() for s in seen) == 1  # only the refused one (bob's), by itself
    other_store.close()
    store.close()


def test_first_labels_of_many_people_share_one_credential_lookup(url, tmp_path):
    """People not yet in memory: their credentials are looked up in batches, live ones only; an
    unknown, revoked or withdrawn person is refused as before."""
    store, app = tmp_app(tmp_path, FeedbackStore(url))
    add_people(store)
    for who in ("carol", "dave"):
        store.add_annotator(who, kind="human", token=f"tok-{who}")
        store.record_consent(who, POLICY.consent_version, POLICY.purpose + "\n" + POLICY.consent_text, True)
    found, _epoch = store.credential_holders([("token", TOKENS["alice"]), ("token", "tok-carol"), ("token", "nope"),
                                              ("session", "tok-dave")])
    from rlhf_gym.store import hash_token

    assert {k: h.id for k, h in found.items()} == {("token", hash_token(TOKENS["alice"])): "alice",
                                                    ("token", hash_token("tok-carol")): "carol"}
    assert store.access.holder("token", hash_token("nope"), 0.0) is None  # unknown credentials are not kept
    store.access.clear()
    steps = make_queries(n_pairs=0, n_steps=4)["step"]
    c = TestClient(app)
    post_queries(c, steps)
    web = app.state.web
    before = web.resolver.batches
    assert c.post("/api/feedback", headers={"Authorization": "Bearer tok-carol"},
                  json={"query_id": steps[0].id, "value": 1.0, "client_key": "c0"}).status_code == 201
    assert web.resolver.batches == before + 1  # the cold credential went through the resolver
    r = c.post("/api/feedback", headers={"Authorization": "Bearer not-a-token"},
               json={"query_id": steps[1].id, "value": 1.0, "client_key": "x"})
    assert r.status_code == 401 and "unknown" in r.json()["detail"]
    store.revoke_invite("dave", reason="test")
    r = c.post("/api/feedback", headers={"Authorization": "Bearer tok-dave"},
               json={"query_id": steps[1].id, "value": 1.0, "client_key": "d0"})
    assert r.status_code == 401
    store.withdraw_annotator("bob", reason="test")
    store.access.clear()
    assert _label(c, "bob", steps[2].id, "b0").status_code in (401, 403)
    stored = sorted(fb_key(store, f.id) for f in store.feedback(include_withdrawn=True))
    assert stored == ["c0"]
    store.close()
