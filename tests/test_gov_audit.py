"""Tampering with any audit entry (changed, deleted, reordered, truncated tail) is caught and named."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import delete, select, update

from rlhf_gym.cli import main
from rlhf_gym.store import FeedbackStore, audit
from rlhf_gym.store.schema import AuditHeadRow, AuditRow
from rlhf_gym.types import Feedback, StepQuery


def _fill(store: FeedbackStore) -> None:
    """Six audit entries: annotator, three labels, a run, an admin action."""
    a = store.add_annotator("t")
    qs = [StepQuery.make(np.zeros(2), 0, step=i, episode=0) for i in range(3)]
    store.add_queries(qs)
    for i, q in enumerate(qs):
        store.add_feedback(Feedback(q.id, a, float(i % 2), 0.0, 1.0))
    store.add_run("r1")
    store.audit("admin", "admin.note", {"x": 1})
    assert store.verify_audit().ok and store.verify_audit().entries == 6


def _swap(s, a: int, b: int) -> None:
    ra, rb = s.get(AuditRow, a), s.get(AuditRow, b)
    fields = ("at", "actor", "action", "payload", "prev_hash", "hash")
    va, vb = ({f: getattr(r, f) for f in fields} for r in (ra, rb))
    ra.prev_hash, rb.prev_hash = "tmp-a", "tmp-b"  # prev_hash is unique: an attacker swaps through other values
    s.flush()
    for f in fields:
        setattr(ra, f, vb[f])
    s.flush()
    for f in fields:
        setattr(rb, f, va[f])


TAMPER = {
    "changed": (lambda s: s.execute(update(AuditRow).where(AuditRow.seq == 3).values(payload={"value": 0.0})), 3,
                "changed"),
    "changed_actor": (lambda s: s.execute(update(AuditRow).where(AuditRow.seq == 4).values(actor="someone")), 4,
                      "changed"),
    "deleted": (lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == 3)), 3, "missing"),
    "reordered": (lambda s: _swap(s, 2, 3), 2, "link"),
    "truncated_tail": (lambda s: s.execute(delete(AuditRow).where(AuditRow.seq >= 5)), 5, "deleted from the end"),
    "last_entry_deleted": (lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == 6)), 6, "deleted from the end"),
    "all_deleted": (lambda s: s.execute(delete(AuditRow)), 1, "deleted from the end"),
    "head_deleted": (lambda s: s.execute(delete(AuditHeadRow)), 7, "head checkpoint is missing"),
}


@pytest.mark.parametrize("kind", sorted(TAMPER))
def test_tampering_fails_verify_and_names_the_entry(store, kind, capsys):
    _fill(store)
    change, bad_seq, words = TAMPER[kind]
    with store.session() as s, s.begin():
        change(s)
    res = store.verify_audit()
    assert not res.ok
    assert res.first_bad_seq == bad_seq, res.reason
    assert words in res.reason
    db = store.url.removeprefix("sqlite:///")
    assert main(["audit", "verify", "--db", db]) == 1
    err = capsys.readouterr().err
    assert f"BROKEN at entry {bad_seq}" in err and words in err


def test_intact_log_verifies_with_exit_status_0(store, capsys):
    _fill(store)
    db = store.url.removeprefix("sqlite:///")
    assert main(["audit", "verify", "--db", db]) == 0
    assert "intact: 6 entries" in capsys.readouterr().out


def test_forged_entry_appended_after_the_checkpoint_is_caught(store):
    _fill(store)
    with store.session() as s, s.begin():
        last = s.get(AuditRow, 6)
        h = audit.entry_hash(7, 1.0, "x", "feedback.add", {}, last.hash)
        s.add(AuditRow(seq=7, at=1.0, actor="x", action="feedback.add", payload={}, prev_hash=last.hash, hash=h))
    res = store.verify_audit()
    assert not res.ok and res.first_bad_seq == 7 and "outside the store" in res.reason


def test_truncation_with_a_rewritten_checkpoint_needs_the_secret_key(tmp_path, monkeypatch):
    """With RLHF_GYM_AUDIT_KEY set, someone without the key cannot re-sign a shorter log."""
    monkeypatch.setenv(audit.KEY_ENV, "owner-secret")
    store = FeedbackStore(tmp_path / "f.db")
    _fill(store)
    with store.session() as s, s.begin():
        s.execute(delete(AuditRow).where(AuditRow.seq >= 5))
        head = s.get(AuditHeadRow, 1)
        last = s.get(AuditRow, 4)
        head.seq, head.hash = 4, last.hash
        head.mac = audit.head_mac(4, last.hash, key=b"guessed")
    res = store.verify_audit()
    assert not res.ok and "signature" in res.reason
    monkeypatch.delenv(audit.KEY_ENV)
    assert not store.verify_audit().ok  # verifying without the key that wrote it also fails, and says so


def test_published_head_catches_a_full_rewrite(store, capsys):
    _fill(store)
    db = store.url.removeprefix("sqlite:///")
    assert main(["audit", "head", "--db", db]) == 0
    published = capsys.readouterr().out.strip()
    assert published.startswith("6:")
    # An insider who holds the key drops entries 5-6 and re-signs the checkpoint: chain and head agree...
    with store.session() as s, s.begin():
        s.execute(delete(AuditRow).where(AuditRow.seq >= 5))
        last = s.get(AuditRow, 4)
        head = s.get(AuditHeadRow, 1)
        head.seq, head.hash, head.mac = 4, last.hash, audit.head_mac(4, last.hash)
    assert store.verify_audit().ok
    # ...but not with the head published before.
    assert main(["audit", "verify", "--db", db, "--expect", published]) == 1
    assert "entry 6" in capsys.readouterr().err
    assert main(["audit", "verify", "--db", db, "--expect", "oops"]) == 2


def test_every_write_keeps_the_checkpoint_at_the_last_entry(store):
    _fill(store)
    with store.session() as s:
        head = s.get(AuditHeadRow, 1)
        last = s.execute(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).scalar_one()
        assert (head.seq, head.hash) == (last.seq, last.hash)
