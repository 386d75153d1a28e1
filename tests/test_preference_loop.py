"""The preference loop end to end: tiny runs, small budgets, withdrawal and retraining, terminal prompt, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlhf_gym.cli import main
from rlhf_gym.config import TrainConfig
from rlhf_gym.envs import make_env
from rlhf_gym.feedback.selection import candidate_pairs
from rlhf_gym.feedback.teachers_preference import make_preference_teacher
from rlhf_gym.feedback.terminal_pairs import TerminalPairSource, render_segment
from rlhf_gym.jobs.preference import train_preference
from rlhf_gym.learners.preference import PreferenceSettings
from rlhf_gym.rewards.training import retrain_from_store
from rlhf_gym.rollouts import evaluate_policy, random_policy, rollout
from rlhf_gym.runs import RunDir
from rlhf_gym.store import FeedbackStore
from rlhf_gym.types import PairQuery


def test_tiny_cartpole_run_beats_random(tmp_path):
    cfg = TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=12, seed=0,
                      out=str(tmp_path / "run"), timesteps=16_000, progress=False, eval_episodes=10)
    res = train_preference(cfg)
    env = make_env("CartPole-v1", seed=0)
    rand = evaluate_policy(env, random_policy(env), 10).mean()
    env.close()
    assert res["mean_return"] > 2 * rand, (res["mean_return"], rand)
    assert res["feedback_used"] == 12
    run = RunDir(tmp_path / "run", create=False)
    for name in ("policy.zip", "policy.json", "reward_model.safetensors", "metrics.csv", "learning_curve.png",
                 "accuracy_vs_labels.png", "return_vs_labels.png", "config.json"):
        assert run.file(name).exists(), name
    policy = run.load_policy()
    env = make_env("CartPole-v1")
    assert rollout(env, policy, seed=1).ret > 2 * rand
    env.close()
    store = FeedbackStore(run.db_path)
    models = store.models()
    assert models and len(store.lineage(models[-1].id)) == 12
    assert {f.id for f in store.feedback()} >= set(store.lineage(models[-1].id))
    # the policy is in the store too, derived from the reward models: withdrawing the teacher flags it
    policy_rows = [m for m in models if m.kind == "policy"]
    assert len(policy_rows) == 1 and len(store.lineage(policy_rows[0].id)) == 12
    teacher = store.feedback()[0].annotator_id
    flagged = store.withdraw_annotator(teacher)["models_flagged"]
    assert policy_rows[0].id in flagged and len(flagged) == len(models)
    store.close()
    # a fresh policy on the learned reward, without any labels
    res2 = train_preference(TrainConfig(env="CartPole-v1", feedback="preference", reward=str(tmp_path / "run"),
                                        out=str(tmp_path / "fresh"), timesteps=1024, progress=False,
                                        eval_episodes=2))
    assert res2["feedback_used"] == 0 and (tmp_path / "fresh" / "policy.zip").exists()


@pytest.mark.parametrize(("env_id", "budget", "seglen", "algo"), [
    ("CartPole-v1", 1, 600, "ppo"), ("Pendulum-v1", 1, 300, "sac"),
    ("Pendulum-v1", 3, 1, "ppo"),
])
def test_small_budgets_and_odd_segment_lengths_never_crash(tmp_path, env_id, budget, seglen, algo):
    cfg = TrainConfig(env=env_id, feedback="preference", teacher="oracle", budget=budget, seed=1, algo=algo,
                      out=str(tmp_path / "r"), timesteps=600, segment_length=seglen, progress=False,
                      eval_episodes=1, extra={"query_episodes": 2, "eval_points": 1})
    with pytest.warns(UserWarning, match="budget"):
        res = train_preference(cfg)
    assert res["asked"] == budget
    assert np.isfinite(res["mean_return"])


def _label_with(store: FeedbackStore, name: str, pairs, run_id: str) -> list[int]:
    t = make_preference_teacher("oracle", name, np.random.default_rng(0), store=store, run_id=run_id)
    return [f.id for f in t.ask([PairQuery.make(a, b, run_id=run_id) for a, b in pairs]) if f.value is not None]


def _alice_and_bob(tmp_path) -> tuple[FeedbackStore, list[int], list[int]]:
    """A store with 12 oracle pair labels from alice and the rest from bob (run "r")."""
    env = make_env("CartPole-v1", seed=0)
    trajs = [rollout(env, random_policy(env), seed=i, env_id="CartPole-v1") for i in range(10)]
    env.close()
    pairs = candidate_pairs(trajs, 24, 20, np.random.default_rng(0))
    store = FeedbackStore(tmp_path / "feedback.db")
    alice = _label_with(store, "alice", pairs[:12], "r")
    bob = _label_with(store, "bob", pairs[12:], "r")
    return store, alice, bob


def test_retrain_after_withdrawal_leaves_no_withdrawn_label_in_lineage(tmp_path):
    store, alice, bob = _alice_and_bob(tmp_path)
    first, _ = retrain_from_store(store, tmp_path / "m1", run_id="r")
    assert set(store.lineage(first)) == set(alice) | set(bob)
    report = store.withdraw_annotator("bob", reason="asked to leave")
    assert first in report["models_flagged"]
    second, metrics = retrain_from_store(store, tmp_path / "m2", run_id="r")
    lineage = set(store.lineage(second))
    assert lineage == set(alice) and not lineage & set(bob)
    flagged = {m.id for m in store.models(flagged_only=True)}
    assert first in flagged and second not in flagged
    assert metrics["feedback_ids"] == len(alice)
    store.close()


def test_cli_retrain_and_label_exports(tmp_path, capsys):
    env = make_env("CartPole-v1", seed=0)
    trajs = [rollout(env, random_policy(env), seed=i, env_id="CartPole-v1") for i in range(6)]
    env.close()
    pairs = candidate_pairs(trajs, 8, 20, np.random.default_rng(1))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"env": "CartPole-v1"}))
    store = FeedbackStore(run / "feedback.db")
    ids = _label_with(store, "carol", pairs, "r")
    store.close()
    assert main(["reward", "retrain", str(run)]) == 0
    assert (run / "reward_model.safetensors").exists()
    for fmt in ("jsonl", "parquet", "trl", "imitation"):
        assert main(["labels", "export", str(run), "--format", fmt, "--out", str(tmp_path / f"l.{fmt}")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert len(rows) == len(ids) and {"annotator", "query_id", "left", "right", "label", "response_time_s"} <= set(rows[0])
    trl = [json.loads(x) for x in (tmp_path / "l.trl").read_text().splitlines()]
    assert all(set(r) >= {"chosen", "rejected"} for r in trl)
    assert len(trl) == sum(r["label"] != 0.5 for r in rows)
    for r in trl:  # the chosen clip is the one with the higher true return
        assert sum(r["chosen"]["rews"]) >= sum(r["rejected"]["rews"])
    imit = [json.loads(x) for x in (tmp_path / "l.imitation").read_text().splitlines()]
    f = imit[0]["fragment1"]
    assert len(f["obs"]) == len(f["acts"]) + 1 and 0.0 <= imit[0]["preference"] <= 1.0
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "l.parquet").num_rows == len(ids)
    assert main(["labels", "export", str(tmp_path / "nope")]) == 2
    assert main(["reward", "retrain", str(tmp_path / "nope")]) == 2


def test_terminal_pairs_reask_consent_and_stop(tmp_path):
    env = make_env("CartPole-v1")
    traj = rollout(env, random_policy(env), seed=3, env_id="CartPole-v1")
    env.close()
    pairs = candidate_pairs([traj], 3, 5, np.random.default_rng(0))
    answers = iter(["yes", "x", "1", "=", "q"])
    printed: list[str] = []
    store = FeedbackStore(tmp_path / "fb.db")
    src = TerminalPairSource(store=store, run_id="r", annotator_id="p1", out_dir=tmp_path / "clips",
                             input_fn=lambda _p: next(answers), out=printed.append)
    src.remember([traj])
    src.post([PairQuery.make(a, b, run_id="r") for a, b in pairs])
    got = src.poll(0)
    assert [f.value for f in got] == [1.0, 0.5]
    assert any("Please type 1, 2, =, s or q" in p for p in printed)
    assert store.has_consent("p1")
    assert src.stopped
    assert list((tmp_path / "clips").glob("*keyframes.png")), "side-by-side key frames written"
    assert list((tmp_path / "clips").glob("*.gif"))
    store.close()
    frames = render_segment(pairs[0][0], traj.acts)
    assert len(frames) >= len(pairs[0][0])


def test_annotator_weighting_drops_or_downweights_flagged_labels(tmp_path):
    store, alice, bob = _alice_and_bob(tmp_path)
    excluded, _ = retrain_from_store(store, tmp_path / "m1", run_id="r", annotator_weights={"bob": 0.0})
    assert set(store.lineage(excluded)) == set(alice)  # an excluded annotator is not in the lineage
    down, metrics = retrain_from_store(store, tmp_path / "m2", run_id="r", annotator_weights={"bob": 0.25})
    assert set(store.lineage(down)) == set(alice) | set(bob) and metrics["labels"] == len(alice) + len(bob)
    store.close()


def test_an_inverted_reward_is_refit_once_then_reported(tmp_path, monkeypatch, capsys):
    """When a fit looks inverted the loop restarts from fresh weights once, and if the refit still looks
    inverted it says so (printed, in the result, per round) instead of training on it silently."""
    import rlhf_gym.learners.preference as pref

    calls = []

    def inverted_fit(model, pairs, rng, tc=None, warm=False, weights=None, device=None, unlabelled=()):
        calls.append(warm)
        return {"inverted": True, "warning": "the learned reward looks INVERTED (forced)", "heldout_accuracy": 0.2,
                "train_accuracy": 1.0}

    monkeypatch.setattr(pref, "fit_reward_model", inverted_fit)
    cfg = TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=8, seed=0,
                      out=str(tmp_path / "run"), timesteps=1024, progress=False, eval_episodes=2)
    res = train_preference(cfg)
    # the first (cold) fit's own validation split was never trained on, so it is believed: refit fresh once;
    # later (warm) fits are not judged on their own split (earlier rounds trained on it), and with 8 labels
    # there is no held-out set, so they are not judged at all
    assert calls[:2] == [False, False] and all(calls[2:]) and res["inverted_rounds"] == [1]
    assert any("INVERTED" in w for w in res["warnings"])
    assert "WARNING: round" in capsys.readouterr().out


def test_exploration_pre_training_comes_before_the_first_query(tmp_path):
    cfg = TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=6, seed=0,
                      out=str(tmp_path / "run"), timesteps=4096, progress=False, eval_episodes=2,
                      extra={"unsup_frac": 0.25})
    res = train_preference(cfg)
    assert res["feedback_used"] == 6
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first_query = min(r["step"] for r in rows if r.get("asked"))
    assert first_query >= 1024
    with pytest.raises(ValueError, match="unsup_frac"):
        train_preference(TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=2,
                                     out=str(tmp_path / "bad"), timesteps=1024, progress=False,
                                     extra={"unsup_frac": 0.9}))


def _query_steps(tmp_path, name, **extra):
    cfg = TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=6, seed=0,
                      out=str(tmp_path / name), timesteps=8192, progress=False, eval_episodes=2,
                      extra={"rounds": 3, "schedule": "fixed", **extra})
    train_preference(cfg)
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    steps, asked = [], 0
    for r in rows:
        if r.get("asked", 0) > asked:
            steps.append(r["step"])
            asked = r["asked"]
    return steps


def test_round_power_brings_rounds_forward(tmp_path):
    even = _query_steps(tmp_path, "even")
    early = _query_steps(tmp_path, "early", round_power=2)
    assert len(even) == len(early) == 3
    assert even[0] == early[0] == 0
    gaps_even, gaps_early = np.diff(even), np.diff(early)
    assert abs(gaps_even[1] - gaps_even[0]) <= 256  # evenly spaced, up to one PPO rollout
    assert early[1] < even[1] and gaps_early[1] > 2 * gaps_early[0]  # (k/n)^2: 0, 1/9, 4/9 of the span
    with pytest.raises(ValueError, match="round_power"):
        PreferenceSettings.from_extra({"round_power": "soon"})
    with pytest.raises(ValueError, match="round_power"):
        _query_steps(tmp_path, "bad", round_power=0)


def test_heldout_labels_are_never_trained_on(tmp_path, monkeypatch):
    """One label in five (seeded) is held out: no fit sees it, no model's lineage holds it, and the reported
    held-out accuracy is measured on exactly those labels; the inversion warning is judged on them."""
    import rlhf_gym.learners.preference as pref

    fitted: list[set[int]] = []
    real_fit = pref.fit_reward_model

    def spy(model, pairs, rng, tc=None, warm=False, weights=None, device=None, unlabelled=()):
        fitted.append({id(p[0]) for p in pairs})
        return real_fit(model, pairs, rng, tc, warm=warm, weights=weights, device=device, unlabelled=unlabelled)

    monkeypatch.setattr(pref, "fit_reward_model", spy)
    seen = {}
    real_judge = pref.PreferenceLoop.judge_heldout

    def judge(self, m, warm):
        real_judge(self, m, warm)
        seen["loop"] = self

    monkeypatch.setattr(pref.PreferenceLoop, "judge_heldout", judge)
    cfg = TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=20, seed=3,
                      out=str(tmp_path / "run"), timesteps=2048, progress=False, eval_episodes=2,
                      extra={"heldout_min_budget": 20})
    res = train_preference(cfg)
    loop = seen["loop"]
    # test-then-train: every label after the first fit was judged before any fit saw it
    assert 0 < res["prequential_pairs"] < 20 and 0.0 <= res["prequential_accuracy"] <= 1.0
    held = [p for p, h in zip(loop.pairs, loop.heldout_flags, strict=True) if h]
    held_ids = {fid for (_, fid), h in zip(loop.pair_meta, loop.heldout_flags, strict=True) if h}
    assert len(held) == 4 and res["labels_trained"] == 16 and res["feedback_used"] == 20
    assert res["heldout_pairs"] == sum(1 for p in held if p[2] != 0.5)
    assert fitted and all(not ({id(p[0]) for p in held} & f) for f in fitted)
    store = FeedbackStore(tmp_path / "run" / "feedback.db")
    for m in store.models():
        assert not held_ids & set(store.lineage(m.id)), m.kind
    store.close()


def test_inversion_is_judged_on_the_heldout_labels(tmp_path, monkeypatch):
    import rlhf_gym.learners.preference as pref

    monkeypatch.setattr(pref, "pair_accuracy", lambda model, pairs: (0, len(pairs)))  # every held-out pair wrong
    cfg = TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=20, seed=0,
                      out=str(tmp_path / "run"), timesteps=2048, progress=False, eval_episodes=2,
                      extra={"heldout_min_budget": 20})
    res = train_preference(cfg)
    assert res["inverted_rounds"] and any("0/4" in w for w in res["warnings"])
    assert res["prequential_accuracy"] == 0.0  # judged with the same (patched) accuracy, before training
    assert res["heldout_accuracy"] == 0.0 and res["heldout_pairs"] == 4
