"""AIRL (Fu, Luo and Levine 2018): the discriminator has the form ``D = exp(f) / (exp(f) + pi(a|s))`` with
``f(s, a, s') = g(s, a) + gamma h(s') - h(s)``, so its logit is ``f - log pi(a|s)``. At the optimum ``g``
recovers the demonstrator's reward (up to the shaping ``h``, which the generator's policy ignores), which is
what is saved and transferred: the generator itself is trained on ``g`` (anchored to the absorbing state,
as in :mod:`rlhf_gym.learners.adversarial`), since adding a potential-based ``h`` changes no optimal policy.

``h`` is zero in the absorbing state, and ``gamma h(s')`` is dropped on the step into a termination. ``h`` is
bounded (``tanh``) like ``g``: an unbounded ``h`` separates the two data sets by itself, leaving ``g`` - the
reward that is kept - uninformative (the discriminator then wins and the generator collapses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rlhf_gym.learners.adversarial import (
    AdversarialResult,
    AdversarialSettings,
    Discriminator,
    Rows,
    train_adversarial,
)
from rlhf_gym.rewards.models import CLIP, RewardModel
from rlhf_gym.types import Trajectory


class AIRLDiscriminator(Discriminator):
    """logit = scale * g(s, a) + gamma h(s') (1 - done) - h(s) - log pi(a|s)."""

    needs_log_pi = True

    def __init__(self, reward: RewardModel, st: AdversarialSettings) -> None:
        super().__init__(reward, st)
        d = reward.cfg.obs_dim
        self.h = nn.Sequential(nn.Linear(d, st.disc_hidden), nn.LeakyReLU(), nn.Linear(st.disc_hidden, st.disc_hidden),
                               nn.LeakyReLU(), nn.Linear(st.disc_hidden, 1), nn.Tanh())

    def potential(self, obs: Any, absorbing: torch.Tensor) -> torch.Tensor:
        o = self.tensor(np.asarray(obs, np.float32)).reshape(len(absorbing), -1)
        z = ((o - self.reward.obs_mean) / self.reward.obs_std).clamp(-CLIP, CLIP)
        return torch.where(absorbing, 0.0, self.h(z).squeeze(-1))

    def logits(self, rows: Rows, log_pi: torch.Tensor | None) -> torch.Tensor:
        assert log_pi is not None
        ab = self.tensor(rows.absorbing)
        ends = self.tensor(rows.done) | ab
        shaping = self.st.gamma * torch.where(ends, 0.0, self.potential(rows.next_obs, ab)) - self.potential(rows.obs, ab)
        return self.st.disc_scale * self.score(rows) + shaping - log_pi


def train_airl(env_id: str, demos: Sequence[Trajectory], *, algo: str = "ppo", timesteps: int = 100_000,
               seed: int = 0, settings: AdversarialSettings | None = None, **kw: Any) -> AdversarialResult:
    """AIRL on ``env_id`` from ``demos`` with an SB3 ``algo`` generator (ppo, or sac for continuous actions)."""
    st = settings or AdversarialSettings()

    def make(reward: RewardModel) -> Discriminator:
        return AIRLDiscriminator(reward, st)

    return train_adversarial(env_id, demos, make, algo=algo, timesteps=timesteps, seed=seed, settings=st, **kw)
