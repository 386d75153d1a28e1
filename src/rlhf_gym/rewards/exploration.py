"""Unsupervised exploration before the first query: a state-entropy reward (PEBBLE's pre-training).

Early clips of a random policy all look alike (on MountainCar none of them reaches the goal), so a
teacher has nothing to prefer and the first labels are wasted. PEBBLE first trains the policy to
*visit new states*, rewarding each step by a particle estimate of the state entropy: the distance
from the new state to its k-th nearest neighbour among recently visited states (as in APT). States
far from everything seen before pay more, so the policy learns to cover the state space, and the
clips shown to the teacher then span the interesting behaviours.

Distances are taken between observations standardised by running statistics, so no observation
dimension dominates because of its units; the reward is divided by its running standard deviation,
so the RL algorithm sees a well-scaled signal whatever the task.
"""

from __future__ import annotations

import numpy as np


class RunningMoments:
    """Running mean and variance of vectors (Chan et al.'s parallel update)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.mean = np.zeros(shape)
        self.var = np.ones(shape)
        self.count = 1e-4

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        n = x.shape[0]
        if n == 0:
            return
        m, v = x.mean(0), x.var(0)
        delta, total = m - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + v * n + delta ** 2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.var, 1e-8))


class StateEntropyReward:
    """k-nearest-neighbour state-entropy reward over a ring buffer of recent observations.

    Call it with a batch of new observations (one per parallel environment); it returns one reward
    each, then adds the observations to the buffer.
    """

    def __init__(self, obs_dim: int, k: int = 5, capacity: int = 10_000) -> None:
        if k < 1:
            raise ValueError(f"state-entropy k must be >= 1, got {k}")
        self.k, self.capacity = k, capacity
        self.buf = np.zeros((capacity, obs_dim), np.float32)
        self.size = self.pos = 0
        self.obs_stats = RunningMoments((obs_dim,))
        self.rew_stats = RunningMoments(())

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, np.float32).reshape(len(obs), -1)
        self.obs_stats.update(x)
        if self.size < self.k:  # nothing to compare with yet
            self._add(x)
            return np.zeros(len(x), np.float32)
        mean, std = self.obs_stats.mean.astype(np.float32), self.obs_stats.std.astype(np.float32)
        z, ref = (x - mean) / std, (self.buf[: self.size] - mean) / std
        d2 = (z * z).sum(1)[:, None] - 2 * z @ ref.T + (ref * ref).sum(1)[None, :]
        kth = np.sqrt(np.maximum(np.partition(d2, self.k - 1, axis=1)[:, self.k - 1], 0.0))
        r = np.log1p(kth)
        self.rew_stats.update(r[:, None].reshape(-1))
        self._add(x)
        return (r / float(self.rew_stats.std)).astype(np.float32)

    def _add(self, x: np.ndarray) -> None:
        idx = (self.pos + np.arange(len(x))) % self.capacity
        self.buf[idx] = x
        self.pos = int((self.pos + len(x)) % self.capacity)
        self.size = min(self.size + len(x), self.capacity)
