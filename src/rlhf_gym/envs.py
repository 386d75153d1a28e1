"""Making environments, checking what a learner needs of them, and rendering frames."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np


class EnvError(ValueError):
    """The environment id is unknown or does not suit the chosen learner."""


@dataclass(frozen=True)
class EnvSpec:
    """What a learner needs to know of an environment, read once from its spaces."""

    env_id: str
    obs_shape: tuple[int, ...]
    discrete: bool
    n_actions: int | None  # discrete only
    act_shape: tuple[int, ...]  # continuous only; () for discrete
    max_episode_steps: int | None


def make_env(env_id: str, seed: int | None = None, render_mode: str | None = None, **kwargs: object) -> gym.Env:
    """``gym.make`` with a clear error for an unknown id; seeds the action space too. Atari ids
    (``ALE/...``) import ale-py, the ``atari`` extra, only when asked for."""
    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError as e:
            raise EnvError(f"{env_id!r} needs the Arcade Learning Environment: pip install 'rlhf-gym[atari]'") from e
        gym.register_envs(ale_py)
    try:
        env = gym.make(env_id, render_mode=render_mode, **kwargs)
    except gym.error.Error as e:
        if "box2d" in str(e).lower():  # Gymnasium's advice (swig, then build box2d-py) is not needed here
            raise EnvError(f"{env_id!r} needs Box2D: pip install 'rlhf-gym[box2d]' (a prebuilt wheel)") from e
        raise EnvError(f"unknown or unavailable environment {env_id!r}: {e}") from e
    if seed is not None:
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def env_spec(env_id: str) -> EnvSpec:
    env = make_env(env_id)
    try:
        return spec_of(env)
    finally:
        env.close()


def spec_of(env: gym.Env) -> EnvSpec:
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box):
        raise EnvError(f"{env.spec.id if env.spec else env}: only Box observation spaces are supported, got {obs_space}")
    discrete = isinstance(act_space, gym.spaces.Discrete)
    if not discrete and not isinstance(act_space, gym.spaces.Box):
        raise EnvError(f"only Discrete or Box action spaces are supported, got {act_space}")
    return EnvSpec(
        env_id=env.spec.id if env.spec else str(env),
        obs_shape=tuple(obs_space.shape),
        discrete=discrete,
        n_actions=int(act_space.n) if discrete else None,
        act_shape=() if discrete else tuple(act_space.shape),
        max_episode_steps=env.spec.max_episode_steps if env.spec else None,
    )


def require_discrete(env_id: str, learner: str) -> EnvSpec:
    """Raise :class:`EnvError` naming the problem unless ``env_id`` has a discrete action space."""
    spec = env_spec(env_id)
    if not spec.discrete:
        raise EnvError(f"learner {learner!r} needs a discrete action space, but {env_id} has continuous actions "
                       f"(shape {spec.act_shape}); use --feedback preference with --algo sac for continuous control")
    return spec


def try_render(env: gym.Env) -> np.ndarray | None:
    """An RGB frame from an env made with ``render_mode='rgb_array'``, or None where rendering fails."""
    try:
        frame = env.render()
    except Exception:  # no display libraries, headless pygame trouble: feedback still works without frames
        return None
    return frame if isinstance(frame, np.ndarray) else None
