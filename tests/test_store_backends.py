"""The store and the web app on each backend: SQLite always, PostgreSQL when RLHF_GYM_TEST_PG_URL is set.

Each PostgreSQL test gets a fresh database (created and dropped here), so tests never see each other.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from _web_helpers import ADMIN, add_people, admin_headers, headers, make_queries, post_queries
from rlhf_gym.store import ConsentError, FeedbackStore, StoreError
from rlhf_gym.types import Feedback, StepQuery

PG_URL = os.environ.get("RLHF_GYM_TEST_PG_URL")


def _pg_database():
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from rlhf_gym.store import resolve_url

    base = make_url(resolve_url(PG_URL))
    name = f"rlhf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    return base.set(database=name).render_as_string(hide_password=False), admin, name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_store(request, tmp_path):
    if request.param == "sqlite":
        s = FeedbackStore(tmp_path / "b.db")
        yield s
        s.close()
        return
    if not PG_URL:
        pytest.skip("RLHF_GYM_TEST_PG_URL not set (no PostgreSQL server for this run)")
    from sqlalchemy import text

    url, admin, name = _pg_database()
    s = FeedbackStore(url)
    try:
        yield s
    finally:
        s.close()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _q(run="r1"):
    return StepQuery.make(np.arange(4.0), 1, step=0, episode=0, run_id=run)


def test_round_trip_consent_withdraw_audit(backend_store):
    s = backend_store
    s.consent_version = "v1"
    p = s.add_annotator("p", kind="human", token="tok-p-123456")
    assert s.annotator_by_token("tok-p-123456").id == "p" and s.annotator_by_token("other") is None
    qs = [_q() for _ in range(3)]
    s.add_queries(qs, assigned_to=p)
    assert s.add_queries(qs, assigned_to=p) == []  # posting again adds nothing
    with pytest.raises(ConsentError):
        s.add_feedback(Feedback(qs[0].id, p, 1, 0, 1))
    s.record_consent(p, "v1", "text", True)
    ids = [s.add_feedback(Feedback(q.id, p, float(i % 2), 0, 1, step=i)).id for i, q in enumerate(qs)]
    assert [f.id for f in s.feedback(run_id="r1")] == ids
    mid = s.record_model("m.safetensors", ids[:2], run_id="r1")
    assert s.models_using(p) == [mid] and s.lineage(mid) == ids[:2]
    assert s.withdraw_annotator(p)["models_flagged"] == [mid]
    assert s.feedback() == [] and len(s.feedback(include_withdrawn=True)) == 3
    with pytest.raises(StoreError, match="withdrawn"):
        s.add_feedback(Feedback(qs[0].id, p, 1, 0, 1))
    assert s.verify_audit().ok


def test_add_queries_in_one_batch_skips_known_and_repeated_ids(backend_store):
    """Many queries over several runs in one call: repeats (in the call or stored) are left alone, runs made."""
    s = backend_store
    old = _q("r0")
    assert s.add_queries([old]) == [old.id]
    qs = [_q(run=f"r{i % 3}") for i in range(1200)]  # more ids than one IN (...) chunk
    got = s.add_queries([old, *qs, qs[5], qs[0]])
    assert got == [q.id for q in qs]
    assert sorted(q.id for q in s.queries()) == sorted([old.id, *got])
    assert {q.id for q in s.queries(run_id="r2")} == {q.id for q in qs[2::3]}
    back = s.query(qs[7].id)
    assert back.kind == "step" and back.run_id == "r1" and np.allclose(back.obs, qs[7].obs)
    with pytest.raises(StoreError, match="nobody"):  # an unknown assignee stores none of the batch
        s.add_queries([_q("r9"), _q("r9")], assigned_to="nobody")
    assert s.queries(run_id="r9") == []
    assert s.add_queries(qs[:10]) == []


def test_client_key_and_assignment(backend_store):
    s = backend_store
    a, b = s.add_annotator("a"), s.add_annotator("b")
    q = _q()
    s.add_queries([q], assigned_to=a)
    with pytest.raises(StoreError, match="not assigned"):
        s.add_feedback(Feedback(q.id, b, 1, 0, 1))
    f1 = s.add_feedback(Feedback(q.id, a, 1, 0, 1), client_key="k")
    assert s.add_feedback(Feedback(q.id, a, 1, 0, 1), client_key="k").id == f1.id
    assert len(s.feedback()) == 1


def test_concurrent_writers_keep_every_label_and_the_audit_chain(backend_store):
    """Several threads adding labels at once (the web server's situation) lose nothing."""
    import threading

    s = backend_store
    people = [s.add_annotator(f"p{i}") for i in range(4)]
    qs = [_q() for _ in range(40)]
    s.add_queries(qs)
    lock = threading.Lock()  # the web app serialises writers the same way

    def work(i):
        with lock:
            return s.add_feedback(Feedback(qs[i].id, people[i % 4], 1.0, 0, 1), client_key=f"c{i}").id

    with ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(work, range(40)))
    assert len(set(ids)) == 40 and len(s.feedback()) == 40
    assert s.verify_audit().ok


def test_web_app_on_the_backend(backend_store, tmp_path):
    from fastapi.testclient import TestClient

    from rlhf_gym.web.app import create_app

    store = backend_store
    add_people(store)
    c = TestClient(create_app(store, ADMIN, tmp_path / "clips"))
    qs = make_queries()
    assert post_queries(c, qs["pair"], assigned_to="alice").status_code == 200
    for i, q in enumerate(qs["pair"]):
        r = c.post("/api/feedback", headers=headers("alice"), json={"query_id": q.id, "value": 1.0, "client_key": f"k{i}"})
        assert r.status_code == 201
    r = c.post("/api/feedback", headers=headers("alice"), json={"query_id": qs["pair"][0].id, "value": 1.0, "client_key": "k0"})
    assert r.status_code == 409
    ans = c.get("/api/admin/answers?run_id=run-1", headers=admin_headers()).json()["answers"]
    assert [a["query_id"] for a in ans] == [q.id for q in qs["pair"]]
    assert c.get(f"/api/clips/{qs['pair'][0].id}/left", headers=headers("alice")).status_code == 200


@pytest.mark.postgres
def test_a_pooled_connection_dropped_while_idle_is_replaced_before_use(monkeypatch):
    """The server's connections are tested only after sitting idle (not at every checkout, which cost the
    busy label writer a round trip per batch); one the database dropped meanwhile is replaced unseen."""
    if not PG_URL:
        pytest.skip("RLHF_GYM_TEST_PG_URL not set (no PostgreSQL server for this run)")
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from rlhf_gym.store import store as store_module

    url, admin, name = _pg_database()
    s = FeedbackStore(url)

    def drop_connections() -> None:
        with admin.connect() as c:
            n = c.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name}).scalar_one()
        assert n >= 1  # the store's pooled connection was there to drop

    try:
        s.add_annotator("a1")
        drop_connections()
        monkeypatch.setattr(store_module, "PING_AFTER_IDLE_S", 0.0)  # every pooled connection counts as idle
        assert s.add_annotator("a2") == "a2"
        assert {a.id for a in s.annotators()} >= {"a1", "a2"}
        # A connection used a moment ago is not tested: a drop then surfaces once, and the pool recovers.
        monkeypatch.setattr(store_module, "PING_AFTER_IDLE_S", 3600.0)
        drop_connections()
        with pytest.raises(OperationalError):
            s.add_annotator("a3")
        assert s.add_annotator("a3") == "a3"
    finally:
        s.close()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_withdrawal_committed_while_a_batch_read_the_person_is_seen(backend_store, monkeypatch):
    """A person not in memory is read before the write lock (PostgreSQL's short path); a withdrawal by another
    handle committed right after that read must still refuse the label (the check under the lock catches it).
    (SQLite reads under the lock, where no other writer can come in between.)"""
    from rlhf_gym.store import batch as batch_module
    from rlhf_gym.store.errors import Withdrawn

    s = backend_store
    if not s._pg:
        pytest.skip("PostgreSQL only: SQLite reads people under the write lock")
    other = FeedbackStore(s.url)
    try:
        p = s.add_annotator("p")
        qs = [_q() for _ in range(3)]
        s.add_queries(qs)
        s.add_annotator("w")
        assert s.add_feedback(Feedback(qs[0].id, "w", 1, 0, 1), client_key="w0").id  # generation known now
        s.access.forget(p)  # p is not in memory: the next batch reads p
        real = batch_module.BatchMixin._read_standings
        withdrawn = []

        def read_then_withdraw(self, sess, aids):
            got = real(self, sess, aids)
            if p in aids and not withdrawn:
                other.withdraw_annotator(p)  # committed after p was read as not withdrawn
                withdrawn.append(p)
            return got

        monkeypatch.setattr(batch_module.BatchMixin, "_read_standings", read_then_withdraw)
        out = s.add_feedback_many([(Feedback(qs[1].id, p, 1, 0, 1), "p1")])
        assert withdrawn == [p]
        assert isinstance(out[0], Withdrawn)
        assert [f.annotator_id for f in s.feedback(include_withdrawn=True)] == ["w"]
        assert s.verify_audit().ok
    finally:
        other.close()
