"""Observation pipelines of pixel games, the same for every game of a family.

Atari (ALE): the conventional preprocessing, as SB3's ``AtariWrapper`` does it: up to 30 no-op steps
at reset, 4 frames skipped per action (max over the last two), grey scale, 84x84, then the last 4
frames stacked, channel first: observations are ``uint8`` arrays ``(4, 84, 84)``. Episodes do not end on
a life lost (the learner optimises a learned reward, not the score) and rewards are not clipped (the
true reward is only ever used for evaluation).

MinAtar: the 10x10 boolean channel maps, as ``uint8`` (0/255) channel first ``(C, 10, 10)``, so SB3 and
the CNN reward model treat them as images; no stacking (MinAtar's channels already carry motion trails).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

FRAME_STACK = 4
SCREEN = 84


class AtariFrames(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """No-op starts, frame skipping with a max over the last two frames, grey scale, resize to 84x84.

    Written here (with Pillow for the resize) rather than taken from Gymnasium's ``AtariPreprocessing``,
    which needs OpenCV; the steps are the conventional ones (Mnih et al. 2015; SB3's ``AtariWrapper``).
    The ALE env must be made with ``frameskip=1`` and ``obs_type="grayscale"``.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30, frame_skip: int = 4, size: int = SCREEN) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, noop_max=noop_max, frame_skip=frame_skip, size=size)
        gym.Wrapper.__init__(self, env)
        self.noop_max, self.frame_skip, self.size = noop_max, frame_skip, size
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        from PIL import Image

        img = Image.fromarray(np.asarray(frame, np.uint8).reshape(frame.shape[:2]))
        return np.asarray(img.resize((self.size, self.size), Image.Resampling.BILINEAR), np.uint8)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        noops = int(self.env.unwrapped.np_random.integers(0, self.noop_max + 1)) if self.noop_max else 0
        for _ in range(noops):
            obs, _r, term, trunc, info = self.env.step(0)
            if term or trunc:
                obs, info = self.env.reset()
        return self._resize(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        total, last = 0.0, []
        term = trunc = False
        info: dict[str, Any] = {}
        for _ in range(self.frame_skip):
            obs, r, term, trunc, info = self.env.step(action)
            total += float(r)
            last = (last + [obs])[-2:]
            if term or trunc:
                break
        frame = np.maximum(last[0], last[-1]) if len(last) == 2 else last[-1]
        return self._resize(frame), total, term, trunc, info


def atari_preprocessing(env: gym.Env) -> gym.Env:
    """:class:`AtariFrames` then the last 4 frames stacked: ``uint8`` observations ``(4, 84, 84)``."""
    from gymnasium.wrappers import FrameStackObservation

    return FrameStackObservation(AtariFrames(env), FRAME_STACK)


class MinAtarImage(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """MinAtar's ``(10, 10, C)`` booleans as ``uint8`` images ``(C, 10, 10)`` in {0, 255}; rgb frames as uint8."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (c, h, w), np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:  # MinAtar seeds its game but not Gymnasium's generator; seed that too
            gym.Env.reset(self.env.unwrapped, seed=seed)
        return super().reset(seed=seed, options=options)

    def observation(self, observation: Any) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(observation, np.uint8).transpose(2, 0, 1) * 255)

    def render(self) -> Any:
        frame = self.env.render()
        if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.dtype != np.uint8:
            frame = (np.clip(frame, 0, 1) * 255).astype(np.uint8)
            frame = frame.repeat(16, axis=0).repeat(16, axis=1)  # 10x10 cells -> 160x160 pixels
        return frame


def minatar_preprocessing(env: gym.Env) -> gym.Env:
    return MinAtarImage(env)


def is_image_space(space: gym.Space) -> bool:
    """A ``uint8`` Box of rank 3: what SB3's CnnPolicy and our CNN reward model take."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8
