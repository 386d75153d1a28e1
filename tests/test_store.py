import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rlhf_gym.store import ConsentError, FeedbackStore, StoreError
from rlhf_gym.types import Feedback, StepQuery


def _q(run="r1"):
    return StepQuery.make(np.arange(4.0), 1, step=0, episode=0, run_id=run)


def test_round_trip_and_export_import(store, tmp_path):
    a = store.add_annotator("t1")
    qs = [_q() for _ in range(3)]
    store.add_queries(qs, assigned_to=a)
    for i, q in enumerate(qs):
        store.add_feedback(Feedback(q.id, a, float(i % 2), q.created_at, q.created_at + 1, step=i))
    got = store.feedback(run_id="r1")
    assert [f.value for f in got] == [0.0, 1.0, 0.0]
    assert store.export_jsonl(tmp_path / "out.jsonl") == 3
    other = FeedbackStore(tmp_path / "other.db")
    assert other.import_jsonl(tmp_path / "out.jsonl") == 3
    assert other.import_jsonl(tmp_path / "out.jsonl") == 0  # importing twice adds nothing
    assert [f.value for f in other.feedback()] == [0.0, 1.0, 0.0]
    assert store.verify_audit().ok and other.verify_audit().ok


def test_bad_feedback_is_refused_and_nothing_stored(store):
    a = store.add_annotator("a")
    b = store.add_annotator("b")
    q = _q()
    store.add_queries([q], assigned_to=a)
    with pytest.raises(StoreError, match="unknown query"):
        store.add_feedback(Feedback("q-nope", a, 1, 0, 1))
    with pytest.raises(StoreError, match="not assigned"):
        store.add_feedback(Feedback(q.id, b, 1, 0, 1))
    with pytest.raises(StoreError, match="unknown annotator"):
        store.add_feedback(Feedback(q.id, "ghost", 1, 0, 1))
    assert store.feedback() == []


def test_client_key_makes_submission_idempotent(store):
    a = store.add_annotator("a")
    q = _q()
    store.add_queries([q])
    f1 = store.add_feedback(Feedback(q.id, a, 1, 0, 1), client_key="k")
    f2 = store.add_feedback(Feedback(q.id, a, 1, 0, 1), client_key="k")
    assert f1.id == f2.id and len(store.feedback()) == 1


def test_consent_and_withdrawal(store):
    store.consent_version = "v1"
    p = store.add_annotator("person", kind="human")
    q = _q()
    store.add_queries([q])
    with pytest.raises(ConsentError, match="consent"):
        store.add_feedback(Feedback(q.id, p, 1, 0, 1))
    store.record_consent(p, "v1", "text", agreed=True)
    fb = store.add_feedback(Feedback(q.id, p, 1, 0, 1))
    mid = store.record_model("m.safetensors", [fb.id], run_id="r1")
    assert store.models_using(p) == [mid]
    out = store.withdraw_annotator(p)
    assert out["models_flagged"] == [mid] and store.models(flagged_only=True)[0].id == mid
    assert store.feedback() == []
    with pytest.raises(StoreError, match="withdrawn"):
        store.add_feedback(Feedback(q.id, p, 0, 0, 1))


def test_acknowledged_answer_survives_sigkill(tmp_path):
    db = tmp_path / "k.db"
    code = textwrap.dedent(f"""
        import os, signal, numpy as np
        from rlhf_gym.store import FeedbackStore
        from rlhf_gym.types import Feedback, StepQuery
        s = FeedbackStore({str(db)!r})
        a = s.add_annotator("a")
        q = StepQuery.make(np.zeros(4), 0, 0, 0)
        s.add_queries([q])
        fb = s.add_feedback(Feedback(q.id, a, 1.0, 0, 1))
        print(fb.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    fid = int(proc.stdout.strip())
    s = FeedbackStore(db)
    assert [f.id for f in s.feedback()] == [fid]


def test_audit_tampering_is_detected(store):
    a = store.add_annotator("a")
    q = _q()
    store.add_queries([q])
    store.add_feedback(Feedback(q.id, a, 1, 0, 1))
    assert store.verify_audit().ok
    from sqlalchemy import update

    from rlhf_gym.store.schema import AuditRow

    with store.session() as s, s.begin():
        s.execute(update(AuditRow).where(AuditRow.seq == 2).values(payload=json.loads('{"x": 1}')))
    res = store.verify_audit()
    assert not res.ok and res.first_bad_seq == 2
    assert os.path.exists(store.url.removeprefix("sqlite:///"))
