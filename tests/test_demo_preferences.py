"""Demonstrations + preferences: the reward model pre-trained from demonstrations (D-REX-ranked comparisons),
then refined from labels; lineage and withdrawal reach it like labels do; bad input exits 2."""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_gym.cli import main
from rlhf_gym.config import TrainConfig
from rlhf_gym.demos.data import record_demos, trajectory_from_record, write_jsonl
from rlhf_gym.envs import make_env
from rlhf_gym.feedback.selection import sample_segments
from rlhf_gym.feedback.teachers_demonstration import PolicyDemonstrator
from rlhf_gym.jobs.preference import train_preference
from rlhf_gym.learners.preference import PreferenceLoop
from rlhf_gym.rewards.diagnostics import pair_accuracy
from rlhf_gym.rewards.models import RewardModel
from rlhf_gym.rollouts import random_policy, rollout
from rlhf_gym.store import FeedbackStore


def balance(obs: np.ndarray) -> int:
    return int(3 * obs[2] + obs[3] > 0)


def demo_file(tmp_path, policy, name: str, n: int = 3, epsilon: float = 0.0):
    src = PolicyDemonstrator(policy, "t", rng=np.random.default_rng(0), epsilon=epsilon)
    trajs = [trajectory_from_record(fb.data) for fb in record_demos(src, "CartPole-v1", n, seed=0, max_steps=200)]
    return write_jsonl(trajs, tmp_path / f"{name}.jsonl")


def cfg(tmp_path, name: str, demos, budget: int = 0, **extra) -> TrainConfig:
    return TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=budget, seed=0,
                       out=str(tmp_path / name), demos=str(demos), timesteps=1024, progress=False, eval_episodes=2,
                       extra={"demo_pairs": 60, "demo_episodes": 2, "round_eval_episodes": 1, "eval_points": 1,
                              **extra})


def heldout_accuracy(path) -> float:
    """Pairs of fresh episodes (other seeds): balancing clips against random-play clips, balancing should win."""
    env = make_env("CartPole-v1", seed=0)
    rng = np.random.default_rng(5)
    good = [rollout(env, balance, seed=500 + i, max_steps=200) for i in range(3)]
    bad = [rollout(env, random_policy(env), seed=600 + i) for i in range(6)]
    env.close()
    pairs = [(a, b, 1.0) for a, b in zip(sample_segments(good, 40, 20, rng), sample_segments(bad, 40, 20, rng),
                                          strict=True)]
    c, k = pair_accuracy(RewardModel.load(path), pairs)
    return c / k


def test_demonstrations_pretrain_the_reward_model_and_reach_its_lineage(tmp_path):
    res = train_preference(cfg(tmp_path, "expert", demo_file(tmp_path, balance, "expert")))
    assert res["demos"] == 3 and res["demo_pairs"] == 60 and res["feedback_used"] == 0
    # the ranked levels really are ranked: demonstrations first, uniformly random play last
    levels = res["demo_level_returns"]
    assert levels[0] > levels[-1] + 50, levels
    first = tmp_path / "expert" / "reward_models" / "round_00.safetensors"
    acc = heldout_accuracy(first)
    control = train_preference(cfg(tmp_path, "random", demo_file(tmp_path, None, "random", epsilon=1.0)))
    acc_control = heldout_accuracy(tmp_path / "random" / "reward_models" / "round_00.safetensors")
    assert acc >= 0.9 and acc > acc_control + 0.2, (acc, acc_control)
    store = FeedbackStore(tmp_path / "expert" / "feedback.db")
    demo_ids = {fb.id for fb in store.feedback(kind="demo")}
    models = store.models()
    assert len(demo_ids) == 3 and models
    for m in models:  # the reward model and the policy trained on it: the demonstrations are their lineage
        assert set(store.lineage(m.id)) == demo_ids, m.kind
    flagged = store.withdraw_annotator("dataset-expert")["models_flagged"]
    assert set(flagged) == {m.id for m in models}
    store.close()
    assert control["demos"] == 3


def test_withdrawn_demonstrator_leaves_the_next_fit(tmp_path, monkeypatch):
    """Withdrawn mid-run: the next reward model is refit from fresh weights on the labels alone."""
    original = PreferenceLoop.feedback_round

    def withdraw_then_round(self, step):
        if self.round == 1:
            self.store.withdraw_annotator("dataset-expert")
        return original(self, step)

    monkeypatch.setattr(PreferenceLoop, "feedback_round", withdraw_then_round)
    res = train_preference(cfg(tmp_path, "w", demo_file(tmp_path, balance, "expert"), budget=4, rounds=2))
    assert res["feedback_used"] == 4
    store = FeedbackStore(tmp_path / "w" / "feedback.db")
    demo_ids = {fb.id for fb in store.feedback(kind="demo", include_withdrawn=True)}
    label_ids = {fb.id for fb in store.feedback(kind="pair")}
    rewards = [m for m in store.models() if m.kind == "reward"]
    assert set(store.lineage(rewards[0].id)) == demo_ids  # pre-trained on the demonstrations alone
    assert rewards[0].flagged
    last = set(store.lineage(rewards[-1].id))
    assert last and last <= label_ids and not last & demo_ids and not rewards[-1].flagged
    store.close()


def test_demo_bc_starts_the_policy_from_the_demonstrations(tmp_path):
    res = train_preference(cfg(tmp_path, "bc", demo_file(tmp_path, balance, "expert"), demo_bc=True))
    assert res["bc"]["best_epoch"] >= 1
    # 1024 PPO steps on top cannot undo it: the cloned policy balances (a random policy lasts ~20 steps)
    assert res["mean_return"] >= 150, res["mean_return"]


def test_demo_bc_reads_the_bc_settings(tmp_path):
    demos = demo_file(tmp_path, balance, "expert")
    res = train_preference(cfg(tmp_path, "bc3", demos, demo_bc=True, bc_max_epochs=3, bc_patience=100))
    assert res["bc"]["epochs"] == 3  # stopped by bc_max_epochs, not by its default of 200


@pytest.mark.parametrize(("extra", "message"), [
    (["--reward", "REWARD"], "--demos pre-trains the reward model"),
    (["--env", "Pendulum-v1"], "recorded on CartPole-v1"),
    (["--set", "demo_pairz=3"], "unknown --set key"),
    (["--set", "bc_patients=3"], "unknown --set key"),
    (["--set", "bc_patience=0"], "bc_patience must be > 0"),
])
def test_demos_with_preferences_bad_input_exits_2(tmp_path, capsys, extra, message):
    demos = demo_file(tmp_path, balance, "expert", n=1)
    argv = ["train", "--env", "CartPole-v1", "--feedback", "preference", "--demos", str(demos), "--budget", "2",
            "--out", str(tmp_path / "r"), "--no-progress", *[str(tmp_path) if a == "REWARD" else a for a in extra]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
