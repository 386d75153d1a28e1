"""Environments written for the old ``gym`` API, adapted to Gymnasium's.

Most RLHF tutorials target ``gym`` before 0.26: ``reset()`` returns only the observation, ``step()``
returns ``(obs, reward, done, info)`` and seeding is a separate ``seed()`` method. :class:`OldApiAdapter`
wraps such an object (duck-typed: ``gym`` itself need not be installed, and is not imported) as a
Gymnasium ``Env``, so everything downstream (rollouts, SB3, ``check_env``) sees the new API:

* ``reset(seed=s)`` calls ``seed(s)`` first (where the old env has one), then ``reset()``;
* ``done`` becomes ``terminated``, unless ``info["TimeLimit.truncated"]`` says a time limit cut the
  episode, which becomes ``truncated`` (the old ``TimeLimit`` wrapper's convention);
* old-style spaces (any object shaped like ``gym.spaces.Box``/``Discrete``/...) become Gymnasium spaces,
  and Box observations are cast to the space's dtype;
* ``render()`` passes the chosen ``render_mode`` as the old ``render(mode=...)`` argument.
"""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
import numpy as np


def is_old_api(env: Any) -> bool:
    """True for an object that looks like an old-``gym`` environment rather than a Gymnasium one.

    Gymnasium environments are recognised by class; anything else with ``reset``/``step`` and spaces is
    probed by the shape of ``reset``: an old one takes no ``seed`` keyword (or has a ``seed()`` method
    and is not a Gymnasium ``Env``).
    """
    if isinstance(env, gym.Env):
        return False
    if not all(hasattr(env, a) for a in ("reset", "step", "action_space", "observation_space")):
        return False
    try:
        params = inspect.signature(env.reset).parameters
    except (TypeError, ValueError):
        return True
    return "seed" not in params or callable(getattr(env, "seed", None))


def convert_space(space: Any) -> gym.spaces.Space:
    """A Gymnasium space equal to an old-``gym`` (or any duck-typed) space, read by its class name."""
    if isinstance(space, gym.spaces.Space):
        return space
    kind = type(space).__name__
    if kind == "Box":
        return gym.spaces.Box(low=np.asarray(space.low), high=np.asarray(space.high), shape=tuple(space.shape),
                              dtype=space.dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(int(space.n), start=int(getattr(space, "start", 0)))
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(np.asarray(space.nvec))
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(space.n)
    if kind == "Tuple":
        return gym.spaces.Tuple([convert_space(s) for s in space.spaces])
    if kind == "Dict":
        return gym.spaces.Dict({k: convert_space(s) for k, s in space.spaces.items()})
    raise TypeError(f"cannot convert the old-API space {space!r} ({kind}) to a Gymnasium space")


class OldApiAdapter(gym.Env):
    """A Gymnasium ``Env`` over an old-``gym`` environment object (see the module docstring).

    Args:
        env: the old environment (an instance).
        render_mode: ``rgb_array``/``human``/None, passed to the old ``render(mode=...)``.
        max_episode_steps: cut episodes here (``truncated``) when the old env has no limit of its own.
    """

    def __init__(self, env: Any, render_mode: str | None = None, max_episode_steps: int | None = None) -> None:
        self.env = env
        self.observation_space = convert_space(env.observation_space)
        self.action_space = convert_space(env.action_space)
        old_meta = dict(getattr(env, "metadata", None) or {})
        modes = list(old_meta.get("render_modes", old_meta.get("render.modes", [])))
        self.metadata = {**old_meta, "render_modes": modes}
        if render_mode is not None and modes and render_mode not in modes:
            raise ValueError(f"render_mode {render_mode!r} is not one of the old env's modes {modes}")
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self._t = 0
        params = _params(env.reset)
        self._reset_takes_seed = "seed" in params
        self._render_takes_mode = "mode" in _params(getattr(env, "render", None))

    def _obs(self, obs: Any) -> Any:
        if isinstance(self.observation_space, gym.spaces.Box):
            return np.array(obs, dtype=self.observation_space.dtype)  # a copy: old envs reuse buffers
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            if callable(getattr(self.env, "seed", None)):
                self.env.seed(int(seed))
            elif not self._reset_takes_seed:
                raise ValueError(f"{type(self.env).__name__} has no seed() method and its reset() takes no seed; "
                                 "a seeded reset cannot be honoured")
        out = self.env.reset(seed=seed) if (self._reset_takes_seed and seed is not None) else self.env.reset()
        info: dict[str, Any] = {}
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
            out, info = out  # some 0.2x envs already return (obs, info)
        self._t = 0
        return self._obs(out), dict(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        out = self.env.step(action)
        if len(out) == 5:  # already the new API
            obs, reward, terminated, truncated, info = out
        elif len(out) == 4:
            obs, reward, done, info = out
            info = dict(info or {})
            cut = bool(info.pop("TimeLimit.truncated", False))
            terminated, truncated = bool(done) and not cut, bool(done) and cut
        else:
            raise ValueError(f"{type(self.env).__name__}.step returned {len(out)} values; expected 4 (old API) or 5")
        self._t += 1
        if self.max_episode_steps is not None and self._t >= self.max_episode_steps and not terminated:
            truncated = True
        return self._obs(obs), float(reward), bool(terminated), bool(truncated), dict(info)

    def render(self) -> Any:
        render = getattr(self.env, "render", None)
        if render is None or self.render_mode is None:
            return None
        return render(mode=self.render_mode) if self._render_takes_mode else render()

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()


def _params(fn: Any) -> dict[str, Any]:
    if fn is None:
        return {}
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}
