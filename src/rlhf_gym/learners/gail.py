"""GAIL (Ho and Ermon 2016): the discriminator tells demonstrated (state, action) pairs from generated ones,
and the generator is paid its logit, ``log D - log(1 - D)``: more where it looks like the demonstrator.

The logit is ``disc_scale`` x a :class:`~rlhf_gym.rewards.models.RewardModel`'s bounded output, so the reward
the generator sees (that output, anchored to the absorbing state's and scaled) is the logit up to an affine
map, and the saved reward model is the one a fresh policy can be trained on. The shared loop, the
absorbing-state handling and the generator are in :mod:`rlhf_gym.learners.adversarial`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rlhf_gym.learners.adversarial import (
    AdversarialResult,
    AdversarialSettings,
    Discriminator,
    Rows,
    train_adversarial,
)
from rlhf_gym.rewards.models import RewardModel
from rlhf_gym.types import Trajectory


class GAILDiscriminator(Discriminator):
    """logit(s, a) = scale * r(s, a); r is the reward network (the absorbing state has its own r)."""

    def logits(self, rows: Rows, log_pi: torch.Tensor | None) -> torch.Tensor:
        return self.st.disc_scale * self.score(rows)


def train_gail(env_id: str, demos: Sequence[Trajectory], *, algo: str = "ppo", timesteps: int = 100_000,
               seed: int = 0, settings: AdversarialSettings | None = None, **kw: Any) -> AdversarialResult:
    """GAIL on ``env_id`` from ``demos`` with an SB3 ``algo`` generator (ppo, or sac for continuous actions)."""
    st = settings or AdversarialSettings()

    def make(reward: RewardModel) -> Discriminator:
        return GAILDiscriminator(reward, st)

    return train_adversarial(env_id, demos, make, algo=algo, timesteps=timesteps, seed=seed, settings=st, **kw)
