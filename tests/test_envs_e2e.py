"""End-to-end smoke runs of the loop on a pixel game and a MuJoCo task, through the CLI: label, train the
reward model and the policy, save, evaluate, render a clip. Tiny budgets (a few thousand steps at most);
the Atari and Hopper runs are marked slow (minutes on a shared 2-core machine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlhf_gym.cli import main


def run_cli(tmp_path: Path, env: str, *extra: str, timesteps: int = 1024, budget: int = 4) -> Path:
    out = tmp_path / "run"
    rc = main(["train", "--env", env, "--feedback", "preference", "--teacher", "oracle", "--budget", str(budget),
               "--timesteps", str(timesteps), "--segment-length", "10", "--eval-episodes", "1", "--device", "cpu",
               "--no-progress", "--out", str(out), "--set", "ensemble=1", "--set", "eval_points=1",
               "--set", "round_eval_episodes=1", "--set", "query_episodes=2", *extra])
    assert rc == 0
    return out


def check_run(out: Path, capsys, clip_steps: int) -> None:
    assert (out / "policy.zip").exists() and (out / "reward_model.safetensors").exists()
    from rlhf_gym.feedback.terminal_pairs import render_segment
    from rlhf_gym.store import FeedbackStore

    store = FeedbackStore(out / "feedback.db")
    labels = [f for f in store.feedback() if f.value is not None]
    clips = [s for q in store.queries(kind="pair") for s in (q.left, q.right) if s.start == 0]
    store.close()
    assert len(labels) >= 2, "the teacher's labels must be in the store"
    if clips:  # a stored clip replays into frames (what the terminal prompt and the web app show)
        frames = render_segment(clips[0])
        assert len(frames) >= len(clips[0]) and frames[0].dtype == np.uint8
    capsys.readouterr()
    assert main(["evaluate", str(out), "--episodes", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["episodes"] == 1 and np.isfinite(res["mean_return"])
    assert main(["video", str(out), "--max-steps", str(clip_steps), "--out", str(out / "clip.gif")]) == 0
    assert (out / "clip.gif").stat().st_size > 1000


def test_minatar_end_to_end(tmp_path, capsys):
    pytest.importorskip("minatar")
    out = run_cli(tmp_path, "MinAtar/Breakout-v1")
    check_run(out, capsys, clip_steps=20)
    assert any((out / "feedback.frames").glob("*.npz")), "pixel clips are stored as frames files"


def test_inverted_pendulum_end_to_end(tmp_path, capsys):
    pytest.importorskip("mujoco")
    out = run_cli(tmp_path, "InvertedPendulum-v5", timesteps=1200)
    check_run(out, capsys, clip_steps=10)


@pytest.mark.slow
def test_pong_end_to_end(tmp_path, capsys):
    pytest.importorskip("ale_py")
    out = run_cli(tmp_path, "ALE/Pong-v5", "--set", "n_envs=4", timesteps=2048, budget=6)
    check_run(out, capsys, clip_steps=50)


@pytest.mark.slow
def test_hopper_end_to_end(tmp_path, capsys):
    pytest.importorskip("mujoco")
    out = run_cli(tmp_path, "Hopper-v5", timesteps=3000, budget=6)
    check_run(out, capsys, clip_steps=20)
