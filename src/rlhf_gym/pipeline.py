"""Top-level entry points shared by every feedback type: train, evaluate, video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlhf_gym.config import TrainConfig
from rlhf_gym.envs import make_env, try_render
from rlhf_gym.rollouts import evaluate_policy, rollout
from rlhf_gym.runs import RunDir, save_video


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run one training job as configured; everything it makes goes to ``cfg.out``."""
    from rlhf_gym.jobs import run_job

    cfg.validate()
    return run_job(cfg)


def evaluate_run(run_dir: str | Path, episodes: int = 20, seed: int = 10_000) -> dict[str, Any]:
    """True environment return of the run's greedy policy over ``episodes`` episodes."""
    run = RunDir(run_dir, create=False)
    cfg = run.config()
    if cfg.get("feedback") == "tradeoff":  # vector reward: per-objective returns and the learned weights
        from rlhf_gym.jobs.tradeoff import evaluate_tradeoff

        return evaluate_tradeoff(run, episodes=episodes, seed=seed)
    policy = run.load_policy()
    env = make_env(cfg["env"], seed=seed)
    try:
        rets = evaluate_policy(env, policy, episodes, seed=seed)
    finally:
        env.close()
    return {"env": cfg["env"], "mean_return": float(rets.mean()), "std_return": float(rets.std()),
            "episodes": int(episodes), "min_return": float(rets.min()), "max_return": float(rets.max())}


def video_run(run_dir: str | Path, out: str | Path | None = None, seed: int = 10_000, max_steps: int = 500,
              fps: int = 30) -> Path:
    """Render one episode of the trained agent to ``out`` (MP4, or GIF without an encoder)."""
    run = RunDir(run_dir, create=False)
    cfg = run.config()
    policy = run.load_policy()
    if cfg.get("feedback") == "tradeoff":  # a vector-reward environment
        from rlhf_gym.morl.envs import make_vector_env

        env = make_vector_env(cfg["env"], seed=seed, render_mode="rgb_array")
    else:
        env = make_env(cfg["env"], seed=seed, render_mode="rgb_array")
    frames: list[np.ndarray] = []

    def grab(e: object) -> None:
        fr = try_render(e)
        if fr is None:
            raise RuntimeError(f"{cfg['env']} could not be rendered (rgb_array); no video written")
        frames.append(fr)

    try:
        rollout(env, policy, seed=seed, max_steps=max_steps, on_step=grab)
    finally:
        env.close()
    return save_video(frames, out or run.file("agent.mp4"), fps=fps)
