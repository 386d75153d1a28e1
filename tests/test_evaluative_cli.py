"""CLI smoke tests for evaluative training: train / evaluate --json / video, bad arguments, expert files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhf_gym.cli import main


@pytest.fixture(scope="module")
def tiny_expert(tmp_path_factory) -> Path:
    """A barely trained SB3 PPO model: only the loading path is under test, not its skill."""
    import torch
    from stable_baselines3 import PPO

    from rlhf_gym.envs import make_env

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("expert") / "cartpole-ppo.zip"
    model = PPO("MlpPolicy", make_env("CartPole-v1", seed=0), n_steps=64, batch_size=32, n_epochs=1, seed=0,
                device="cpu", policy_kwargs=dict(net_arch=[8]))
    model.learn(64)
    model.save(str(path))
    return path


def test_train_evaluate_video(tmp_path, tiny_expert, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--env", "CartPole-v1", "--feedback", "evaluative", "--learner", "tamer", "--teacher", "oracle",
               "--budget", "12", "--seed", "1", "--out", str(out), "--eval-episodes", "2", "--no-progress",
               "--set", f"expert={tiny_expert}"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "true return" in printed
    for name in ("config.json", "policy.json", "policy.safetensors", "metrics.csv", "metrics.jsonl",
                 "learning_curve.png", "feedback.db"):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"feedback_used", "env_steps", "mean_return"} <= set(rows[-1])
    assert rows[-1]["feedback_used"] == 12

    from rlhf_gym.store import FeedbackStore

    store = FeedbackStore(out / "feedback.db")
    fbs = store.feedback()
    assert len(fbs) == 12 and all(f.value in (0.0, 1.0) for f in fbs)
    (model,) = store.models()
    assert model.kind == "policy" and store.lineage(model.id) == sorted(f.id for f in fbs)
    store.close()

    assert main(["evaluate", str(out), "--episodes", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["episodes"] == 3 and {"mean_return", "std_return"} <= set(res)

    assert main(["video", str(out), "--max-steps", "20"]) == 0
    printed = capsys.readouterr().out
    video = Path(printed.strip().split()[-1])
    assert video.exists() and video.suffix in (".mp4", ".gif") and video.stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["--env", "Pendulum-v1"], "discrete"),
    (["--budget", "0"], "--budget"),
    (["--learner", "sarsa"], "--learner"),
    (["--teacher", "oracle", "--set", "expert=/no/such/expert.zip"], "expert"),
    (["--set", "mirror_bad=maybe"], "mirror_bad must be true or false"),  # was read as False
    (["--set", "hidden=6x4"], "hidden must be whole numbers"),
    (["--set", "updates_per_answer=2.5"], "updates_per_answer must be a whole number"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, args, message):
    base = ["train", "--teacher", "random", "--budget", "5", "--out", str(tmp_path / "r"), "--no-progress"]
    rc = main(base + args)
    assert rc == 2
    assert message in capsys.readouterr().err


def test_web_teacher_without_server_exits_2(tmp_path, capsys):
    assert main(["train", "--teacher", "web", "--out", str(tmp_path / "r")]) == 2
    assert "--server" in capsys.readouterr().err
