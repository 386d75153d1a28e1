"""Group commit: many answers in one transaction, each with its own outcome; the audit chain stays intact."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from _web_helpers import drop_pg, pg_database
from rlhf_gym.store import AlreadyAnswered, ConsentError, FeedbackStore, KeyUsed, StoreError, UnsafeInputError
from rlhf_gym.types import Feedback, StepQuery

PG_URL = os.environ.get("RLHF_GYM_TEST_PG_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = FeedbackStore(tmp_path / "b.db")
        yield s
        s.close()
        return
    if not PG_URL:
        pytest.skip("RLHF_GYM_TEST_PG_URL not set")
    url, eng, name = pg_database(PG_URL)
    s = FeedbackStore(url)
    yield s
    s.close()
    drop_pg(eng, name)


def test_a_batch_stores_the_good_and_refuses_each_bad_item(store):
    s = store
    s.consent_version = "v1"
    for p in ("ann", "bob", "gone", "nocons"):
        s.add_annotator(p, kind="human")
    for p in ("ann", "bob", "gone"):
        s.record_consent(p, "v1", "text", True)
    s.withdraw_annotator("gone")
    qs = [StepQuery.make(np.zeros(2), 0, step=i, episode=0, run_id="r") for i in range(4)]
    s.add_queries(qs[:3])
    s.add_queries(qs[3:], assigned_to="bob")
    earlier = s.add_feedback(Feedback(qs[2].id, "ann", 1.0, 0, 1), client_key="old")

    def fb(q, who, v=1.0, **kw):
        return Feedback(q.id, who, v, 0.0, 1.0, data=kw or None)

    items = [
        (fb(qs[0], "ann"), "k1"),                   # 0 stored
        (fb(qs[1], "ann", 0.0), "k2"),              # 1 stored
        (fb(qs[0], "ann", 0.0), "k3"),              # 2 second answer to qs[0] in this batch
        (fb(qs[1], "ann", 0.0), "k2"),              # 3 same key as item 1: the same stored answer
        (fb(qs[2], "ann"), "old"),                  # 4 a resend of an earlier answer: that answer
        (fb(qs[0], "gone"), "g1"),                  # 5 withdrawn
        (fb(qs[0], "nocons"), "n1"),                # 6 no consent
        (fb(qs[3], "ann"), "k4"),                   # 7 assigned to bob
        (Feedback("q-unknown", "ann", 1.0, 0, 1), "k5"),  # 8 unknown query
        (fb(qs[0], "bob", 1.0, n=math.nan), "b0"),  # 9 NaN in data
        (fb(qs[3], "bob", None, note="x"), "b1"),   # 10 stored (a skip)
    ]
    before = len(s.audit_entries())
    out = s.add_feedback_many(items)
    assert all(isinstance(out[i], Feedback) and out[i].id for i in (0, 1, 10))
    assert isinstance(out[3], KeyUsed) and out[3].feedback.id == out[1].id  # same key twice in the batch
    assert isinstance(out[4], KeyUsed) and out[4].feedback.id == earlier.id  # a resend of a stored answer
    assert isinstance(out[2], AlreadyAnswered) and isinstance(out[6], ConsentError)
    assert isinstance(out[5], StoreError) and "withdrawn" in str(out[5])
    assert isinstance(out[7], StoreError) and "not assigned" in str(out[7])
    assert isinstance(out[8], StoreError) and "unknown query" in str(out[8])
    assert isinstance(out[9], UnsafeInputError) and "data.n" in str(out[9])
    stored = {(f.query_id, f.annotator_id): f for f in s.feedback()}
    assert set(stored) == {(qs[0].id, "ann"), (qs[1].id, "ann"), (qs[2].id, "ann"), (qs[3].id, "bob")}
    assert stored[(qs[3].id, "bob")].data == {"note": "x"} and stored[(qs[1].id, "ann")].value == 0.0
    entries = s.audit_entries()
    assert [e["action"] for e in entries[before:]] == ["feedback.add"] * 3
    assert [e["payload"]["feedback"] for e in entries[before:]] == [out[0].id, out[1].id, out[10].id]
    assert s.verify_audit().ok
    # the single-answer path continues the same chain
    q5 = StepQuery.make(np.zeros(2), 1, step=9, episode=0, run_id="r")
    s.add_queries([q5])
    s.add_feedback(Feedback(q5.id, "bob", 1.0, 0, 1), client_key="b9")
    assert s.add_feedback_many([]) == [] and s.verify_audit().ok
