"""One clip renderer: frames of an episode replayed from its seed and actions.

The terminal prompt, the web app's clips and the videos all show an episode the same way: reset the
environment with the episode's seed, step the recorded actions, render. A replay that drifts from the
recorded observations (a non-deterministic environment) shows nothing rather than a different episode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rlhf_gym.envs import try_render


def _step(env: Any, a: Any) -> tuple[Any, bool]:
    a = np.asarray(a)
    obs, _r, term, trunc, _ = env.step(a.item() if a.ndim == 0 else a)
    return obs, bool(term or trunc)


def replay_frames(env: Any, seed: int, actions: Sequence[Any], *, start: int = 0,
                  expect_obs: Sequence[np.ndarray] | None = None,
                  render: Callable[[Any], np.ndarray | None] = try_render, atol: float = 1e-4) -> list[np.ndarray]:
    """Frames of the states ``start .. len(actions)`` of the episode with ``seed`` and ``actions``.

    ``env`` is made with ``render_mode="rgb_array"``. The first ``start`` actions are stepped without
    rendering (a clip cut mid-episode). With ``expect_obs`` (the recorded observations from ``start`` on)
    the replay is checked step by step. Returns ``[]`` when rendering fails or the replay diverges.
    """
    try:
        obs, _ = env.reset(seed=seed)
        done = False
        for a in actions[:start]:
            obs, done = _step(env, a)
        frames: list[np.ndarray] = []
        for t in range(start, len(actions) + 1):
            if expect_obs is not None and not done:
                k = t - start
                if k >= len(expect_obs):
                    break
                if not np.allclose(np.asarray(obs, dtype=np.float64), np.asarray(expect_obs[k], dtype=np.float64),
                                   atol=atol):
                    return []
            fr = render(env)
            if fr is None:
                return []
            frames.append(fr)
            if t < len(actions) and not done:
                obs, done = _step(env, actions[t])
        return frames
    except Exception:  # an environment that cannot replay (no seed support, rendering trouble)
        return []


def grey_out(frame: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` copies of ``frame`` darkened to grey: the absorbing padding after an episode ended."""
    grey = (frame.mean(-1, keepdims=True).repeat(3, -1) * 0.6).astype(np.uint8)
    return [grey] * n
