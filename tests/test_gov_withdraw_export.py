"""Withdrawal reaches the store, the models (lineage) and the exports; exports are audited."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from rlhf_gym.cli import main
from rlhf_gym.governance.report import annotator_report
from rlhf_gym.store import FeedbackStore, audit
from rlhf_gym.types import Feedback, PairQuery, Segment


def _seg(r: float) -> Segment:
    return Segment(obs=[[0.0]], acts=[0], next_obs=[[0.0]], rews=[r], absorbing=[False])


@pytest.fixture
def trained(store):
    """Two consenting people label 6 pairs each; a reward model and a policy are trained on all of it."""
    rng = np.random.default_rng(0)
    store.consent_version = "v1"
    qs = [PairQuery.make(_seg(float(rng.normal())), _seg(float(rng.normal())), run_id="r1") for _ in range(6)]
    store.add_queries(qs)
    for p in ("p1", "p2"):
        store.add_annotator(p, kind="human")
        store.record_consent(p, "v1", "text", agreed=True)
        for q in qs:
            store.add_feedback(Feedback(q.id, p, float(q.left.ret > q.right.ret), 0.0, 3.0))
    ids = [fb.id for fb in store.feedback()]
    rm = store.record_model("runs/r1/reward.safetensors", ids, kind="reward", run_id="r1")
    pol = store.record_model("runs/r1/policy.zip", [], kind="policy", run_id="r1", derived_from=[rm])
    assert store.lineage(pol) == sorted(ids)  # a policy trained on the reward model inherits its lineage
    return store, store.url.removeprefix("sqlite:///"), rm, pol


def test_withdraw_cli_excludes_labels_and_flags_every_model(trained, capsys):
    store, db, rm, pol = trained
    p1_ids = {fb.id for fb in store.feedback(annotator_id="p1")}
    assert main(["annotators", "models-using", "p1", "--db", db, "--json"]) == 0
    assert {m["id"] for m in json.loads(capsys.readouterr().out)} == {rm, pol}
    assert main(["annotators", "withdraw", "p1", "--db", db, "--reason", "asked by email"]) == 0
    out = capsys.readouterr().out
    assert "6 labels excluded" in out and rm in out and pol in out
    assert {m.id for m in store.models(flagged_only=True)} == {rm, pol}
    assert not p1_ids & {fb.id for fb in store.feedback()}
    assert {fb.annotator_id for _, fb in store.labelled_pairs()} == {"p2"}
    entry = store.audit_entries()[-1]
    assert entry["action"] == "annotator.withdraw" and entry["payload"]["reason"] == "asked by email"
    assert sorted(entry["payload"]["models_flagged"]) == sorted([rm, pol])
    # The store side of a retrain: a model recorded from what the store now serves has none of p1's labels.
    new = store.record_model("runs/r1/reward2.safetensors", [fb.id for fb in store.feedback()], run_id="r1")
    assert not p1_ids & set(store.lineage(new)) and new not in store.models_using("p1")
    assert new not in {m.id for m in store.models(flagged_only=True)}
    rep = annotator_report(store)
    p1 = next(a for a in rep["annotators"] if a["id"] == "p1")
    assert p1["withdrawn"] and p1["labels"] == 0 and p1["labels_withdrawn"] == 6
    assert main(["annotators", "withdraw", "nobody", "--db", db]) == 2
    assert "unknown annotator 'nobody'" in capsys.readouterr().err


def test_exports_exclude_withdrawn_labels_and_are_audited(trained, tmp_path, capsys):
    store, db, _, _ = trained
    store.withdraw_annotator("p1")
    out = tmp_path / "export"
    assert main(["export", "--db", db, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["feedback"]["annotator_id"] for r in rows} == {"p2"}
    assert rows[0]["annotator"]["kind"] == "human" and rows[0]["annotator"]["consents"][0]["version"] == "v1"
    table = pq.read_table(out / "labels.parquet").to_pydict()
    assert len(table["feedback_id"]) == 6 and set(table["annotator_id"]) == {"p2"}
    assert sorted(table["feedback_id"]) == sorted(r["feedback"]["id"] for r in rows)
    log = store.audit_entries()
    exports = [e for e in log if e["action"].startswith("export.")]
    assert [(e["action"], e["payload"].get("format")) for e in exports] == [
        ("export.labels", "jsonl"), ("export.labels", "parquet"), ("export.audit", None)]
    for e, name in zip(exports, ("labels.jsonl", "labels.parquet", "audit.jsonl"), strict=True):
        assert e["payload"]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    # The exported audit log checks out offline: every hash recomputes and links.
    exported = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    prev = audit.GENESIS
    for e in exported:
        assert e["prev_hash"] == prev
        assert audit.entry_hash(e["seq"], e["at"], e["actor"], e["action"], e["payload"], e["prev_hash"]) == e["hash"]
        prev = e["hash"]
    assert exports[-1]["payload"]["head_seq"] == exported[-1]["seq"]
    assert store.verify_audit().ok
    assert main(["export", "--db", db, "--out", str(out), "--format", "csv"]) == 2


def test_export_round_trips_into_a_fresh_store(trained, tmp_path):
    store, _, _, _ = trained
    store.export_jsonl(tmp_path / "l.jsonl")
    other = FeedbackStore(tmp_path / "other.db")
    assert other.import_jsonl(tmp_path / "l.jsonl") == 12  # consent records travel with the labels
    assert {a.id: a.kind for a in other.annotators()} == {"p1": "human", "p2": "human"}
    assert other.verify_audit().ok


def test_gold_pairs_and_gold_cli(store, capsys):
    from rlhf_gym.governance.gold import add_gold_pairs

    good, bad = _seg(5.0), _seg(-5.0)
    ids = add_gold_pairs(store, [(good, bad)] * 40, np.random.default_rng(0), run_id="r1")
    gold = store.gold_values()
    assert set(gold) == set(ids)
    for qid in ids:  # the gold answer points at the better clip, wherever it was put
        q = store.query(qid)
        assert gold[qid] == float(q.left.ret > q.right.ret)
    assert 10 < sum(gold.values()) < 30  # both sides used
    db = store.url.removeprefix("sqlite:///")
    assert main(["annotators", "gold", ids[0], "none", "--db", db]) == 0
    assert ids[0] not in store.gold_values()
    assert main(["annotators", "gold", ids[0], "2", "--db", db]) == 2
    assert main(["annotators", "gold", "q-nope", "1", "--db", db]) == 2
    assert "unknown query" in capsys.readouterr().err
    actions = [e["action"] for e in store.audit_entries()]
    assert actions.count("gold.set") == 41


def test_list_cli_text(trained, capsys):
    store, db, rm, _ = trained
    store.withdraw_annotator("p2")
    assert main(["annotators", "list", "--db", db]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "WITHDRAWN" in lines["p2"] and "WITHDRAWN" not in lines["p1"] and " v1 " in lines["p1"]
