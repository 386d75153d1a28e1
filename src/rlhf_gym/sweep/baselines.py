"""Baseline jobs a sweep can run beside the run jobs (a row with ``job = "true-reward"``).

``true_reward`` trains the preference loop's own SB3 algorithm, with the same settings and environment
steps, on the environment's true reward: the reference a learned reward is measured against (return
and wall-clock), run in the same sweep so both see the same machine.
"""

from __future__ import annotations

import time
from dataclasses import fields
from typing import Any

from rlhf_gym.config import TrainConfig


def true_reward(cfg: TrainConfig) -> dict[str, Any]:
    """SB3 (PPO for discrete actions, SAC otherwise, or ``cfg.algo``) on the true reward; saved like a run."""
    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_gym.config import check_settings
    from rlhf_gym.envs import make_env, spec_of
    from rlhf_gym.learners.preference import PreferenceSettings, default_timesteps, make_algo
    from rlhf_gym.rollouts import rollout_batch
    from rlhf_gym.runs import RunDir
    from rlhf_gym.runtime import torch_threads

    # the preference loop's settings are accepted (a baseline row shares its rows' [base]); n_envs is used
    check_settings(cfg.extra, tuple(f.name for f in fields(PreferenceSettings)), "job true-reward")
    probe = make_env(cfg.env)
    spec = spec_of(probe)
    probe.close()
    algo_name = cfg.algo if cfg.algo != "auto" else ("ppo" if spec.discrete else "sac")
    timesteps = cfg.timesteps or default_timesteps(algo_name, spec.max_episode_steps)
    n_envs = int(cfg.extra.get("n_envs", PreferenceSettings.n_envs)) if algo_name == "ppo" else 1
    from rlhf_gym.devices import resolve_device

    device = resolve_device(cfg.device)
    run = RunDir(cfg.out)
    run.save_config(cfg, resolved_device=device)
    t0 = time.time()
    with torch_threads(cfg.threads):
        algo = make_algo(algo_name, make_vec_env(lambda: make_env(cfg.env), n_envs=n_envs, seed=cfg.seed), cfg.seed,
                         timesteps, device=device)
        algo.learn(total_timesteps=timesteps)
        learn_s = time.time() - t0
        algo.save(run.file("policy.zip"))
        run.save_policy_info("sb3", "policy.zip", algo=algo_name, discrete=spec.discrete)
        envs = [make_env(cfg.env) for _ in range(cfg.eval_episodes)]
        try:  # the evaluation seeds of the preference loop (10000, 10001, ...)
            trajs = rollout_batch(envs, lambda o: algo.predict(o, deterministic=True)[0],
                                  list(range(10_000, 10_000 + cfg.eval_episodes)))
        finally:
            for e in envs:
                e.close()
    import numpy as np

    rets = np.array([t.ret for t in trajs])
    return {"mean_return": float(rets.mean()), "std_return": float(rets.std()), "episodes": cfg.eval_episodes,
            "feedback_used": 0, "algo": algo_name, "timesteps": timesteps, "learn_s": learn_s,
            "wall_s": time.time() - t0, "device": device}
