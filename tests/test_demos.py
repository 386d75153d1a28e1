"""Demonstrations as feedback: store round trip, consent and withdrawal, files (JSONL, Parquet, Minari), the
terminal demonstrator, and the CLI's errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlhf_gym.cli import main
from rlhf_gym.demos.data import (
    check_demos,
    demos_from_store,
    import_demos,
    load_trajectories,
    read_jsonl,
    record_demos,
    trajectory_from_record,
    write_jsonl,
    write_parquet,
)
from rlhf_gym.feedback.teachers_demonstration import PolicyDemonstrator
from rlhf_gym.feedback.terminal_demos import TerminalDemoSource
from rlhf_gym.store import FeedbackStore
from rlhf_gym.store.store import StoreError
from rlhf_gym.types import ActionQuery, DemoQuery, Query


def cartpole_expert(obs: np.ndarray) -> int:
    """An analytic CartPole controller (500 from every start we tried): no SB3 training in tests."""
    return int(3 * obs[2] + obs[3] > 0)


def test_action_query_round_trips_through_the_store(store):
    q = ActionQuery.make(np.array([0.1, 0.2, 0.3, 0.4]), "CartPole-v1", step=7, run_id="r")
    store.add_queries([q])
    back = store.query(q.id)
    assert isinstance(back, ActionQuery) and back.step == 7 and np.allclose(back.obs, q.obs)
    assert Query.from_dict(q.to_dict()).kind == "action"


def test_demos_are_stored_as_feedback_and_withdrawal_hides_them(store):
    store.add_annotator("sim-expert")
    src = PolicyDemonstrator(cartpole_expert, "sim-expert", store, run_id="r1")
    got = record_demos(src, "CartPole-v1", 2, seed=0, max_steps=50, run_id="r1")
    assert len(got) == 2 and all(fb.id is not None for fb in got)
    demos = demos_from_store(store, run_id="r1")
    assert [len(d.traj) for d in demos] == [50, 50] and demos[0].traj.env_id == "CartPole-v1"
    assert {d.feedback_id for d in demos} == {fb.id for fb in got}
    assert any(e["action"] == "feedback.add" for e in store.audit_entries())
    mid = store.record_model("p.safetensors", [d.feedback_id for d in demos], kind="policy", run_id="r1")
    store.withdraw_annotator("sim-expert")
    assert demos_from_store(store, run_id="r1") == []
    assert store.model(mid).flagged and "sim-expert" in store.model(mid).flagged


def test_a_person_without_consent_cannot_demonstrate(store):
    store.add_annotator("alice", kind="human")
    src = PolicyDemonstrator(cartpole_expert, "alice", store, run_id="r")
    with pytest.raises(StoreError, match="consent"):
        src.ask([DemoQuery.make("CartPole-v1", 0, 20, run_id="r")])
    assert store.feedback(kind="demo") == []


def test_terminal_demonstrator_scripted(store):
    keys = iter(["yes", "1", "x", "0", "1", "q"])  # consent, 3 valid moves with one bad key between, then q
    printed: list[str] = []
    prompts: list[str] = []

    def scripted(prompt: str) -> str:
        prompts.append(prompt)
        return next(keys)

    src = TerminalDemoSource("bob", store, run_id="r", input_fn=scripted, out=printed.append)
    store.add_annotator("bob", kind="human")
    fbs = src.ask([DemoQuery.make("CartPole-v1", 3, 500, run_id="r")])
    assert len(fbs) == 1
    traj = demos_from_store(store)[0].traj
    assert traj.acts.tolist() == [1, 0, 1] and traj.truncated and not traj.terminated
    assert any("got 'x'" in p for p in printed)
    assert "0 = push left" in prompts[-1] and any("pole angle" in p for p in printed)  # names are shown


def test_terminal_demonstrator_ctrl_c_keeps_the_steps_played(store):
    answers = ["yes", "1", "1"]

    def fake_input(_prompt: str) -> str:
        if not answers:
            raise KeyboardInterrupt
        return answers.pop(0)

    store.add_annotator("carol", kind="human")
    src = TerminalDemoSource("carol", store, run_id="r", input_fn=fake_input, out=lambda _m: None)
    src.ask([DemoQuery.make("CartPole-v1", 0, 500, run_id="r"), DemoQuery.make("CartPole-v1", 1, 500, run_id="r")])
    demos = demos_from_store(store)
    assert len(demos) == 1 and demos[0].traj.acts.tolist() == [1, 1] and src.stopped


def test_terminal_demonstrator_declined_consent_stores_nothing(store):
    keys = iter(["no"])
    store.add_annotator("dan", kind="human")
    src = TerminalDemoSource("dan", store, input_fn=lambda _p: next(keys), out=lambda _m: None)
    assert src.ask([DemoQuery.make("CartPole-v1", 0, 500)]) == []
    assert store.feedback() == [] and src.stopped


def test_terminal_labels_states_for_dagger(store):
    keys = iter(["yes", "5", "0", "s"])
    store.add_annotator("eve", kind="human")
    src = TerminalDemoSource("eve", store, input_fn=lambda _p: next(keys), out=lambda _m: None)
    fbs = src.ask([ActionQuery.make(np.zeros(4), "CartPole-v1"), ActionQuery.make(np.ones(4), "CartPole-v1")])
    assert [fb.data for fb in fbs] == [{"action": 0}, None]


def _trajs(n: int = 3):
    """``n`` short expert episodes, recorded without a store (files only)."""
    fbs = record_demos(PolicyDemonstrator(cartpole_expert, "t"), "CartPole-v1", n, seed=0, max_steps=30)
    return [trajectory_from_record(fb.data) for fb in fbs]


def test_jsonl_and_parquet_round_trip(tmp_path):
    trajs = _trajs()
    for path, writer in ((tmp_path / "d.jsonl", write_jsonl), (tmp_path / "d.parquet", write_parquet)):
        writer(trajs, path)
        back, fmt = load_trajectories(path)
        assert fmt == path.suffix[1:] and len(back) == 3
        for a, b in zip(trajs, back, strict=True):
            assert np.allclose(a.obs, b.obs) and a.acts.tolist() == b.acts.tolist() and b.env_id == "CartPole-v1"
            assert (a.terminated, a.truncated) == (b.terminated, b.truncated)


def test_minari_round_trip(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    from rlhf_gym.demos.data import write_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    trajs = _trajs()
    write_minari(trajs, "cartpole/rlhf-test-v0")
    ds = minari.load_dataset("cartpole/rlhf-test-v0")  # Minari itself reads what we wrote
    assert ds.total_episodes == 3 and ds.spec.env_spec.id == "CartPole-v1"
    eps = list(ds.iterate_episodes())
    assert np.allclose(eps[0].observations, trajs[0].obs) and eps[0].actions.tolist() == trajs[0].acts.tolist()
    back, fmt = load_trajectories("cartpole/rlhf-test-v0")
    assert fmt == "minari" and [len(t) for t in back] == [len(t) for t in trajs]
    assert back[0].truncated and not back[0].terminated


def test_check_demos_names_what_is_wrong():
    trajs = _trajs(1)
    with pytest.raises(ValueError, match="recorded on CartPole-v1, not Acrobot-v1"):
        check_demos(trajs, "Acrobot-v1")
    with pytest.raises(ValueError, match="no demonstrations"):
        check_demos([], "CartPole-v1")
    from dataclasses import replace

    bad = replace(trajs[0], acts=np.full(len(trajs[0]), 7), env_id=None)
    with pytest.raises(ValueError, match="not integers in 0..1"):
        check_demos([bad], "CartPole-v1")


def test_import_of_a_persons_dataset_needs_consent(tmp_path, store):
    trajs = _trajs(1)
    with pytest.raises(StoreError, match="consent"):
        import_demos(store, trajs, "frank", source="f.jsonl", person=True)
    assert store.feedback() == []
    fbs = import_demos(store, trajs, "frank", source="f.jsonl", person=True, attest_consent=True)
    assert len(fbs) == 1 and store.has_consent("frank")


def test_cli_record_import_export(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demos"
    assert main(["demos", "record", "--env", "CartPole-v1", "--from", "random", "--episodes", "2", "--out", str(out)]) == 0
    assert len(read_jsonl(out / "demos.jsonl")) == 2
    assert main(["demos", "export", str(out), "--format", "parquet", "--out", str(tmp_path / "d.parquet")]) == 0
    assert main(["demos", "import", str(tmp_path / "d.parquet"), "--env", "CartPole-v1", "--out", str(tmp_path / "s2")]) == 0
    s2 = FeedbackStore(tmp_path / "s2" / "feedback.db")
    assert len(demos_from_store(s2)) == 2 and s2.annotator("dataset-d").kind == "simulated"
    s2.close()


@pytest.mark.parametrize("argv, message", [
    (["demos", "record", "--env", "CartPole-v1", "--from", "psychic", "--episodes", "1"], "must be one of"),
    (["demos", "record", "--env", "NoSuchEnv-v0", "--from", "random", "--episodes", "1"], "NoSuchEnv"),
    (["demos", "record", "--env", "CartPole-v1", "--from", "random", "--episodes", "0"], "--episodes"),
    (["demos", "record", "--env", "CartPole-v1", "--from", "random", "--set", "bogus=1"], "bogus"),
    (["demos", "export", "EMPTY", "--format", "csv"], "--format"),
    (["demos", "import", "EMPTY", "--env", "CartPole-v1"], "no demonstrations"),
    (["demos", "import", "/no/such/file.jsonl", "--env", "CartPole-v1"], "not found"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, argv, message):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    argv = [str(empty) if a == "EMPTY" else a for a in argv]
    if argv[1] in ("record", "import"):
        argv += ["--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_jsonl_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"obs": [[0, 0, 0, 0]]}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_jsonl(p)
