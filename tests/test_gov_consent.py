"""No label from a person without a recorded consent, after declining, or after withdrawal - by any way in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlhf_gym.cli import main
from rlhf_gym.governance.annotators import annotator_summaries, invite_annotator, invite_link
from rlhf_gym.governance.consent import FeedbackPolicy, ensure_terminal_consent, load_policy
from rlhf_gym.store import ConsentError, FeedbackStore, StoreError
from rlhf_gym.types import Feedback, StepQuery


def _q(store: FeedbackStore) -> StepQuery:
    q = StepQuery.make(np.zeros(2), 0, step=0, episode=0, run_id="r")
    store.add_queries([q])
    return q


def test_person_without_any_consent_is_refused_even_without_a_policy_version(store):
    assert store.consent_version is None
    p = store.add_annotator("p", kind="human")
    q = _q(store)
    with pytest.raises(ConsentError, match="no label is accepted without a recorded consent"):
        store.add_feedback(Feedback(q.id, p, 1.0, 0, 1))
    store.record_consent(p, "v1", "text", agreed=False)
    with pytest.raises(ConsentError, match="declined"):
        store.add_feedback(Feedback(q.id, p, 1.0, 0, 1))
    store.record_consent(p, "v1", "text", agreed=True)
    assert store.add_feedback(Feedback(q.id, p, 1.0, 0, 1)).id is not None
    assert store.consent_status(p)["agreed"] is True
    # A simulated teacher needs no consent.
    sim = store.add_annotator("oracle")
    assert store.add_feedback(Feedback(q.id, sim, 1.0, 0, 1)).id is not None


def test_changed_consent_text_asks_again_at_the_terminal(store):
    q = _q(store)
    shown: list[str] = []
    v1 = FeedbackPolicy(consent_text="first text")
    assert ensure_terminal_consent(store, "p", v1, input_fn=lambda _: "yes", out=shown.append)
    assert store.annotator("p").kind == "human"  # an unknown id at the terminal is registered as a person
    assert any("first text" in s for s in shown)
    store.add_feedback(Feedback(q.id, "p", 1.0, 0, 1))
    shown.clear()
    assert ensure_terminal_consent(store, "p", v1, input_fn=lambda _: pytest.fail("asked twice"), out=shown.append)
    v2 = FeedbackPolicy(consent_text="second text")
    assert v2.consent_version != v1.consent_version
    store.consent_version = v2.consent_version  # what the web app / terminal set from the policy
    with pytest.raises(ConsentError, match=v2.consent_version):
        store.add_feedback(Feedback(q.id, "p", 0.0, 0, 1))
    answers = iter(["maybe", "no"])
    assert not ensure_terminal_consent(store, "p", v2, input_fn=lambda _: next(answers), out=shown.append)
    assert any("second text" in s for s in shown) and any("yes or no" in s for s in shown)
    with pytest.raises(ConsentError, match="declined"):
        store.add_feedback(Feedback(q.id, "p", 0.0, 0, 1))


def test_after_withdrawal_labels_are_refused_with_a_clear_message(store):
    assert ensure_terminal_consent(store, "p", FeedbackPolicy(), input_fn=lambda _: "y", out=lambda _: None)
    q = _q(store)
    store.add_feedback(Feedback(q.id, "p", 1.0, 0, 1))
    store.withdraw_annotator("p")
    with pytest.raises(StoreError, match="'p' has withdrawn; no feedback is accepted"):
        store.add_feedback(Feedback(q.id, "p", 1.0, 0, 1))
    msgs: list[str] = []
    assert not ensure_terminal_consent(store, "p", FeedbackPolicy(), input_fn=lambda _: "y", out=msgs.append)
    assert "withdrawn" in msgs[0]


def _export_with(tmp_path, kind: str, consent: bool) -> tuple[str, FeedbackStore]:
    src = FeedbackStore(tmp_path / f"src-{kind}-{consent}.db")
    a = src.add_annotator("a1", kind=kind)
    if kind == "human":
        src.record_consent(a, "v1", "text", agreed=True)
    q = _q(src)
    src.add_feedback(Feedback(q.id, a, 1.0, 0, 1))
    path = str(tmp_path / f"{kind}-{consent}.jsonl")
    src.export_jsonl(path)
    if not consent:  # a file from elsewhere that carries no consent records
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        for r in rows:
            r["annotator"]["consents"] = []
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return path, src


def test_import_keeps_kind_and_carries_consent_records(tmp_path):
    path, _ = _export_with(tmp_path, "human", consent=True)
    dst = FeedbackStore(tmp_path / "dst.db")
    assert dst.import_jsonl(path) == 1
    assert dst.annotator("a1").kind == "human"
    assert dst.consent_status("a1")["version"] == "v1"
    assert "consent.import" in [e["action"] for e in dst.audit_entries()]
    path, _ = _export_with(tmp_path, "simulated", consent=False)
    dst2 = FeedbackStore(tmp_path / "dst2.db")
    assert dst2.import_jsonl(path) == 1 and dst2.annotator("a1").kind == "simulated"


def test_import_of_a_person_without_consent_needs_an_audited_attestation(tmp_path, capsys):
    path, _ = _export_with(tmp_path, "human", consent=False)
    db = str(tmp_path / "dst.db")
    dst = FeedbackStore(db)
    with pytest.raises(ConsentError, match="no recorded consent for person"):
        dst.import_jsonl(path)
    assert dst.feedback() == [] and dst.annotator("a1") is None  # nothing written
    assert main(["import", path, "--db", db]) == 2
    assert "--attest-consent" in capsys.readouterr().err
    assert main(["import", path, "--db", db, "--attest-consent", "--actor", "owner"]) == 0
    assert len(dst.feedback()) == 1
    att = [e for e in dst.audit_entries() if e["action"] == "consent.attest"]
    assert att and att[0]["actor"] == "owner" and att[0]["payload"]["annotator"] == "a1"


def test_rows_without_annotator_kind_count_as_people(tmp_path):
    path, _ = _export_with(tmp_path, "simulated", consent=False)
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    for r in rows:
        del r["annotator"]  # an older or hand-made file
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    dst = FeedbackStore(tmp_path / "dst.db")
    with pytest.raises(ConsentError):
        dst.import_jsonl(path)


def test_import_skips_labels_of_people_withdrawn_here(tmp_path):
    path, src = _export_with(tmp_path, "human", consent=True)
    src.withdraw_annotator("a1")
    assert src.import_jsonl(path) == 0  # re-importing an old backup does not bring them back
    assert src.feedback() == []
    assert src.audit_entries()[-1]["payload"]["skipped_withdrawn"] == 1


def test_contact_is_kept_only_when_the_owner_opts_in_and_dropped_on_withdrawal(tmp_path, store):
    with pytest.raises(StoreError, match="keep_contact"):
        invite_annotator(store, "x", contact="x@example.org", policy=FeedbackPolicy())
    assert store.annotator("x") is None
    aid, token = invite_annotator(store, "y", contact="y@example.org", policy=FeedbackPolicy(keep_contact=True))
    assert store.annotator_by_token(token).id == "y" and store.annotator("y").kind == "human"
    assert invite_link("http://host:8000/", token) == f"http://host:8000/?token={token}"
    assert annotator_summaries(store)[0]["has_contact"]
    store.withdraw_annotator(aid)
    assert not (store.annotator(aid).meta or {}).get("contact")


def test_invite_cli_prints_a_working_link_and_policy_file_is_read(tmp_path, capsys):
    toml = tmp_path / "rlhf-gym.toml"
    toml.write_text('[feedback]\npurpose = "Teach a cart to balance."\nkeep_contact = true\n')
    assert load_policy(toml).keep_contact
    db = str(tmp_path / "run")
    (tmp_path / "run").mkdir()
    assert main(["annotators", "invite", "--db", db, "--id", "ann1", "--url", "http://h:9", "--json",
                 "--policy", str(toml), "--contact", "c@d.e"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["link"] == "http://h:9/?token=" + out["token"]
    s = FeedbackStore(tmp_path / "run" / "feedback.db")  # a folder means its feedback.db
    assert s.annotator_by_token(out["token"]).id == "ann1"
    assert main(["annotators", "invite", "--db", db, "--id", "ann1"]) == 2  # ids are not reused
    bad = tmp_path / "bad.toml"
    bad.write_text("[feedback]\npurpos = 'typo'\n")
    assert main(["annotators", "invite", "--db", db, "--policy", str(bad)]) == 2
    assert "purpos" in capsys.readouterr().err
