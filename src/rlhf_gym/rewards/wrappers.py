"""Environments whose reward is a learned reward model's; the true reward is kept for evaluation only.

Both wrappers put the environment's own reward in ``info["true_reward"]`` (never seen by the
learner's update) and the model's in the returned reward. ``model`` is a plain attribute, so a
training loop swaps in each new reward model without rebuilding the environment. The model is
asked about real steps only: what happens after a termination is the absorbing state, whose reward
the model's output normalisation anchors at 0, which is what the RL algorithm assumes after a ``done``.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rlhf_gym.rewards.models import RewardModel


class LearnedRewardWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Single-environment wrapper: ``step`` returns the learned reward."""

    def __init__(self, env: gym.Env, model: RewardModel | None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, model=model)
        super().__init__(env)
        self.model = model
        self._obs: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, r, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["true_reward"] = float(r)
        learned = 0.0
        if self.model is not None:
            learned = float(self.model.reward(np.asarray(self._obs)[None], np.asarray(action)[None],
                                              np.asarray(obs)[None])[0])
        self._obs = obs
        return obs, learned, terminated, truncated, info


class LearnedRewardVecEnv(VecEnvWrapper):
    """Stable-Baselines3 ``VecEnv`` wrapper: one batched model call per vector step."""

    def __init__(self, venv: VecEnv, model: RewardModel | None) -> None:
        super().__init__(venv)
        self.model = model
        self.explore: Any = None
        """While set (a :class:`~rlhf_gym.rewards.exploration.StateEntropyReward`), steps pay its
        exploration reward instead of the model's: unsupervised pre-training before the first query."""
        self._obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        self.true_returns: list[float] = []  # finished episodes' true returns (for monitoring only)
        self.reward_s = 0.0  # seconds spent computing learned/exploration rewards (overhead accounting)
        self._true_ret = np.zeros(self.num_envs)

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self._obs = np.asarray(obs)
        self._true_ret[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)
        self.venv.step_async(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        obs, rews, dones, infos = self.venv.step_wait()
        nxt = np.asarray(obs).copy()
        for i, done in enumerate(dones):
            if done and "terminal_observation" in infos[i]:
                nxt[i] = infos[i]["terminal_observation"]
        for i, info in enumerate(infos):
            info["true_reward"] = float(rews[i])
        self._true_ret += rews
        for i in np.flatnonzero(dones):
            self.true_returns.append(float(self._true_ret[i]))
            self._true_ret[i] = 0
        t0 = time.perf_counter()
        if self.explore is not None:
            learned = self.explore(nxt)
        elif self.model is not None:
            learned = self.model.reward(self._obs, self._actions, nxt)
        else:
            learned = np.zeros(self.num_envs, np.float32)
        self.reward_s += time.perf_counter() - t0
        self._obs = np.asarray(obs)
        return obs, learned.astype(np.float32), dones, infos


def relabel_replay_buffer(algo: Any, model: RewardModel) -> int:
    """Recompute every stored reward in an off-policy SB3 algorithm's replay buffer with ``model``
    (PEBBLE's relabelling after each reward fit); returns the transitions relabelled (0 without a buffer)."""
    buf = getattr(algo, "replay_buffer", None)
    if buf is None:
        return 0
    upto = buf.buffer_size if buf.full else buf.pos
    if upto == 0:
        return 0
    obs = buf.observations[:upto].reshape(upto * buf.n_envs, -1)
    nxt = buf.next_observations[:upto].reshape(upto * buf.n_envs, -1)
    acts = algo.policy.unscale_action(buf.actions[:upto].reshape(upto * buf.n_envs, -1))
    buf.rewards[:upto] = model.reward(obs, acts, nxt).reshape(upto, buf.n_envs)
    return int(upto * buf.n_envs)
