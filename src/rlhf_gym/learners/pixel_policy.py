"""Which SB3 policy network an observation space gets: an MLP for vectors, a CNN for images.

Images are ``uint8`` boxes of rank 3 (channel first after our preprocessing, see
:mod:`rlhf_gym.envs.pixels`). Atari-sized frames get SB3's ``CnnPolicy`` with its Nature-CNN; frames too
small for Nature-CNN's 8x8 stride-4 first layer (MinAtar's 10x10) get :class:`SmallCNN`, one 3x3
convolution of 16 channels and a 128-unit layer, the network of the MinAtar paper (Young & Tian, 2019).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

NATURE_MIN_SIDE = 36  # Nature-CNN's three convolutions need at least 36x36 pixels


def _features_extractor() -> type:
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class SmallCNN(BaseFeaturesExtractor):
        """Conv 3x3 (16) -> ReLU -> flatten -> 128 units: for small images such as MinAtar's 10x10."""

        def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
            super().__init__(observation_space, features_dim)
            c, h, w = observation_space.shape
            self.net = nn.Sequential(nn.Conv2d(c, 16, 3, 1), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(16 * (h - 2) * (w - 2), features_dim), nn.ReLU())

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.net(observations)

    return SmallCNN


def is_image(space: gym.Space) -> bool:
    from rlhf_gym.envs.pixels import is_image_space

    return is_image_space(space)


def sb3_policy(obs_space: gym.Space) -> tuple[str, dict[str, Any] | None]:
    """``("MlpPolicy", None)`` for vectors; ``("CnnPolicy", kwargs)`` for image observations."""
    if not is_image(obs_space):
        return "MlpPolicy", None
    shape = obs_space.shape
    side = min(shape[1:]) if shape[0] <= 4 else min(shape[:2])  # channel first, or last
    if side >= NATURE_MIN_SIDE:
        return "CnnPolicy", {}
    return "CnnPolicy", {"features_extractor_class": _features_extractor()}
