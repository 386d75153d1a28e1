"""Making environments (registered ids, entry points, old-API objects), checking what a learner needs of
them, and rendering frames."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


EnvLike = str | type | Callable[..., Any] | Any
"""What :func:`make_env` accepts: a registered id, ``module:Class`` / ``path/file.py:Class`` (an entry
point), a class or factory, or an environment object (old ``gym`` API or Gymnasium)."""


def make_registered_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """:func:`make_env` for an id from the outside (the web app): registered ids only, never an entry point
    (``module:Class`` would import code named by a request)."""
    if ":" in env_id or env_id.endswith(".py"):
        raise EnvError(f"{env_id!r} is not a registered environment id")
    return make_env(env_id, render_mode=render_mode)


def make_env(env_id: EnvLike, seed: int | None = None, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """A Gymnasium environment, with a clear error for an unknown id; seeds the action space too.

    ``env_id`` may be a registered id (``CartPole-v1``; ``ALE/...`` and ``MinAtar/...`` import their
    extras only when asked for), an entry point ``package.module:Class`` or ``path/to/file.py:Class``,
    a class or factory, or an environment object. Anything else that is not a Gymnasium ``Env`` (written
    for the old ``gym`` API: 4-tuple ``step``, ``reset`` returning only the observation, ``seed()``; or
    gym 0.26's) is adapted by :func:`~rlhf_gym.envs.old_api.adapt_old_api`: Shimmy's wrappers for a real
    ``gym.Env`` where Shimmy is installed, :class:`~rlhf_gym.envs.old_api.OldApiAdapter` otherwise.
    """
    if isinstance(env_id, str):
        env = _make_from_string(env_id, render_mode, kwargs)
    else:
        env = _adapt(_instantiate(env_id, render_mode, kwargs), render_mode)
    if seed is not None:
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def _make_from_string(env_id: str, render_mode: str | None, kwargs: dict[str, Any]) -> gym.Env:
    from rlhf_gym.envs import extras

    extras.prepare(env_id)  # registers ALE / MinAtar ids, picks a headless GL for MuJoCo; errors name the extra
    if ":" in env_id and env_id not in gym.registry:
        target = load_entry_point(env_id)
        if target is not None:
            return _adapt(_instantiate(target, render_mode, kwargs), render_mode)
    try:
        env = gym.make(env_id, render_mode=render_mode, **extras.make_kwargs(env_id, kwargs))
    except gym.error.Error as e:
        if "box2d" in str(e).lower():  # Gymnasium's advice (swig, then build box2d-py) is not needed here
            raise EnvError(f"{env_id!r} needs Box2D: pip install 'rlhf-gym[box2d]' (a prebuilt wheel)") from e
        extras.explain(env_id, e)
        raise EnvError(f"unknown or unavailable environment {env_id!r}: {e}") from e
    except ModuleNotFoundError as e:
        extras.explain(env_id, e)
        raise EnvError(f"environment {env_id!r} needs a module that is not installed: {e}") from e
    return extras.preprocess(env_id, env)


def load_entry_point(spec: str) -> Any:
    """The object named by ``module:attr`` or ``path/file.py:attr``; None when ``attr`` is not in the module
    (then ``spec`` is Gymnasium's own ``module:EnvId-v0`` form, which ``gym.make`` handles)."""
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise EnvError(f"entry point {spec!r} must look like package.module:Class or path/file.py:Class")
    if mod_name.endswith(".py"):
        path = Path(mod_name)
        if not path.is_file():
            raise EnvError(f"entry point {spec!r}: no file {path}")
        name = f"rlhf_gym_user_env_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
        module = sys.modules.get(name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise EnvError(f"entry point {spec!r}: cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise EnvError(f"entry point {spec!r}: cannot import module {mod_name!r}: {e}") from e
    return getattr(module, attr, None)


def _instantiate(target: Any, render_mode: str | None, kwargs: dict[str, Any]) -> Any:
    """An environment object from a class/factory (called with ``render_mode`` where it takes one) or as is."""
    if not isinstance(target, type) and hasattr(target, "step"):
        return target  # already an environment object
    if not callable(target):
        raise EnvError(f"{target!r} is neither an environment nor a class or factory that makes one")
    params = _call_params(target)
    if render_mode is not None and "render_mode" in params:
        kwargs = {**kwargs, "render_mode": render_mode}
    return target(**kwargs)


def _call_params(fn: Any) -> dict[str, Any]:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


def _adapt(env: Any, render_mode: str | None) -> gym.Env:
    from rlhf_gym.envs.old_api import adapt_old_api, is_old_api

    if is_old_api(env):
        return adapt_old_api(env, render_mode=render_mode)
    if isinstance(env, gym.Env):
        return env
    raise EnvError(f"{type(env).__name__} is not an environment (no reset/step/action_space/observation_space)")


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
