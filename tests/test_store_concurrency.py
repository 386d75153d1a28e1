"""Several processes writing one store at once: every write succeeds and the audit chain verifies."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from _web_helpers import drop_pg, pg_database
from rlhf_gym.store import FeedbackStore
from rlhf_gym.types import Feedback, StepQuery

PG_URL = os.environ.get("RLHF_GYM_TEST_PG_URL")


def _writer(url: str, who: str, n: int, start, out) -> None:
    import numpy as np

    s = FeedbackStore(url)
    start.wait()
    ok = 0
    errors: list[str] = []
    for i in range(n):
        try:
            if i % 3 == 0:  # labels, each with its audit entry
                q = StepQuery.make(np.zeros(2), 0, step=i, episode=0, run_id="r")
                s.add_queries([q])
                s.add_feedback(Feedback(q.id, who, 1.0, 0.0, 1.0), client_key=f"{who}-{i}")
            else:  # an owner's command during a labelling session: one audit entry each
                s.audit(who, "export.labels", {"i": i})
            ok += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported by the test
            errors.append(repr(e)[:300])
    s.close()
    out.put((who, ok, errors))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "c.db")
        return
    if not PG_URL:
        pytest.skip("RLHF_GYM_TEST_PG_URL not set")
    u, eng, name = pg_database(PG_URL)
    yield u
    drop_pg(eng, name)


def test_two_processes_write_audit_entries_at_once(url):
    s = FeedbackStore(url)
    for who in ("p1", "p2"):
        s.add_annotator(who)
    before = len(s.audit_entries())
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    n = 150
    procs = [ctx.Process(target=_writer, args=(url, who, n, start, out)) for who in ("p1", "p2")]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(30)
    for who, ok, errors in results:
        assert errors == [] and ok == n, (who, errors[:3])
    entries = s.audit_entries()
    assert len(entries) == before + 2 * n
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert len(s.feedback()) == 2 * len(range(0, n, 3))
    res = s.verify_audit()
    assert res.ok, res.reason
    s.close()


def test_the_database_refuses_a_forked_chain(tmp_path):
    """Two entries after the same predecessor are refused by the database itself (not only by the code)."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    s = FeedbackStore(tmp_path / "f.db")
    s.audit("a", "x")
    s.audit("a", "y")
    first = s.audit_entries()[1]
    with pytest.raises(IntegrityError), s.engine.begin() as c:
        c.execute(text("INSERT INTO audit_log (seq, at, actor, action, payload, prev_hash, hash) "
                       "VALUES (99, 0, 'm', 'fork', '{}', :p, 'h')"), {"p": first["prev_hash"]})
    assert s.verify_audit().ok


def test_the_database_allows_one_web_answer_per_person_and_query(url):
    """The check is the database's: a second answer with another client key is refused whoever writes it."""
    import numpy as np

    from rlhf_gym.store import AlreadyAnswered

    a, b = FeedbackStore(url), FeedbackStore(url)  # as two server processes would hold
    a.add_annotator("p")
    q = StepQuery.make(np.zeros(2), 0, step=0, episode=0, run_id="r")
    a.add_queries([q])
    first = a.add_feedback(Feedback(q.id, "p", 1.0, 0.0, 1.0), client_key="key-1")
    with pytest.raises(AlreadyAnswered):
        b.add_feedback(Feedback(q.id, "p", 0.0, 0.0, 2.0), client_key="key-2")
    assert b.add_feedback(Feedback(q.id, "p", 1.0, 0.0, 1.0), client_key="key-1").id == first.id  # a resend
    assert [f.id for f in b.feedback()] == [first.id] and b.verify_audit().ok
    a.close()
    b.close()


def _labeller(url: str, who: str, qids: list[str], shared: list[str], start, out) -> None:
    """Labels in batches as ``who``, and the same answers of the shared annotator as the other labeller."""
    from rlhf_gym.store import batch

    fast = []
    real = batch.BatchMixin._add_fast

    def counting(self, *a, **k):
        res = real(self, *a, **k)
        fast.append(res is not None)
        return res

    batch.BatchMixin._add_fast = counting
    s = FeedbackStore(url)
    first = s.add_feedback(Feedback(qids[0], who, 1.0, 0.0, 1.0), client_key=f"{who}-0")  # the cache knows them now
    start.wait()
    got: dict[str, int] = {f"{who}-0": first.id}
    errors: list[str] = []
    i, j, size = 1, 0, 1
    while i < len(qids) or j < len(shared):
        items = [(Feedback(q, who, float(k % 2), 0.0, 1.0), f"{who}-{k}") for k, q in enumerate(qids[i:i + size], i)]
        items += [(Feedback(q, "both", 1.0, 0.0, 1.0), f"both-{k}") for k, q in enumerate(shared[j:j + 2], j)]
        i, j, size = i + size, j + 2, size % 7 + 1
        for (fb, key), res in zip(items, s.add_feedback_many(items), strict=True):
            if isinstance(res, Feedback):
                got[key] = res.id
            elif type(res).__name__ == "KeyUsed" and fb.annotator_id == "both":
                got[key] = res.feedback.id
            else:
                errors.append(repr(res)[:300])
    s.close()
    out.put((who, got, errors, sum(fast)))


def _owner(url: str, n: int, start, out) -> None:
    s = FeedbackStore(url)
    start.wait()
    for i in range(n):
        s.audit("owner", "export.labels", {"i": i})
    s.close()
    out.put(("owner", n, [], 0))


def test_two_processes_label_at_once_with_an_owner_auditing(url):
    """Two label writers (as two server workers) and an owner's commands at once: every answer stored exactly
    once, a resend of the same answer through the other writer names the one stored, one audit entry per
    label, the chain verifies; on PostgreSQL both writers take the short path under the write lock too."""
    import numpy as np

    s = FeedbackStore(url)
    for who in ("w1", "w2", "both"):
        s.add_annotator(who)
    qs = [StepQuery.make(np.zeros(2), 0, step=i, episode=0, run_id="r") for i in range(150)]
    s.add_queries(qs)
    before = len(s.audit_entries())
    mine = {"w1": [q.id for q in qs[:60]], "w2": [q.id for q in qs[60:120]]}
    shared = [q.id for q in qs[120:]]
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_labeller, args=(url, w, mine[w], shared, start, out)) for w in ("w1", "w2")]
    procs.append(ctx.Process(target=_owner, args=(url, 20, start, out)))
    for p in procs:
        p.start()
    start.set()
    results = {who: (got, errors, fast) for who, got, errors, fast in (out.get(timeout=240) for _ in procs)}
    for p in procs:
        p.join(30)
    for who in ("w1", "w2"):
        got, errors, _fast = results[who]
        assert errors == [], (who, errors[:3])
        assert len(got) == 60 + len(shared)
    rows = s.feedback()
    by_key = {}
    for f in rows:
        by_key.setdefault((f.annotator_id, f.query_id), []).append(f.id)
    assert len(rows) == 60 + 60 + len(shared) and all(len(v) == 1 for v in by_key.values())
    shared_ids = {by_key[("both", q)][0] for q in shared}
    for who in ("w1", "w2"):  # both writers were told the same stored answer for each shared label
        got = results[who][0]
        assert {got[f"both-{k}"] for k in range(len(shared))} == shared_ids
    entries = s.audit_entries()
    assert len(entries) == before + len(rows) + 20
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    labels = sorted(e["payload"]["feedback"] for e in entries if e["action"] == "feedback.add")
    assert labels == sorted(f.id for f in rows)
    res = s.verify_audit()
    assert res.ok, res.reason
    if url.startswith("postgresql"):
        assert results["w1"][2] > 0 and results["w2"][2] > 0  # batches that took the short path
    s.close()
