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

A real ``gym.Env`` (an instance of the installed ``gym`` package's class, ``gym.make``'d or a subclass)
goes through Shimmy's wrappers instead, where Shimmy is installed (the extra ``rlhf-gym[gym-compat]``):
``GymV26CompatibilityV0`` when its ``reset`` takes ``seed`` (gym >= 0.26), else ``GymV21CompatibilityV0``
(:func:`adapt_old_api`). ``gym`` is never imported here: an object can only be a ``gym.Env`` once its
own code has imported ``gym``, so the check reads ``sys.modules``.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Literal

import gymnasium as gym
import numpy as np

GYM_COMPAT_EXTRA = "rlhf-gym[gym-compat]"

OldApiVia = Literal["auto", "shimmy", "ours"]


def is_old_api(env: Any) -> bool:
    """True for an object that looks like an environment but is not a Gymnasium one, so needs adapting.

    Gymnasium environments are recognised by class. Anything else with ``reset``/``step`` and both spaces
    counts: a ``gym.Env`` of any version (0.26's ``reset(seed=...)`` returning ``(obs, info)`` and 5-tuple
    ``step`` included), or a duck-typed object written for either API.
    """
    if isinstance(env, gym.Env):
        return False
    return is_gym_env(env) or all(hasattr(env, a) for a in ("reset", "step", "action_space", "observation_space"))


def is_gym_env(env: Any) -> bool:
    """True for an instance of the old ``gym`` package's ``Env`` (wrappers included); never imports ``gym``."""
    gym_module = sys.modules.get("gym")
    env_cls = getattr(gym_module, "Env", None)
    return isinstance(env_cls, type) and isinstance(env, env_cls)


def adapt_old_api(env: Any, render_mode: str | None = None, via: OldApiVia = "auto") -> gym.Env:
    """A Gymnasium ``Env`` over an old-API environment object.

    Args:
        env: the old environment (an instance).
        render_mode: the mode frames are asked for (``rgb_array``/``human``/None).
        via: ``auto`` uses Shimmy's wrappers for a real ``gym.Env`` where Shimmy is installed and
            :class:`OldApiAdapter` otherwise; ``shimmy`` insists on Shimmy (an ``ImportError`` naming the
            extra when it or ``gym`` is missing; a ``TypeError`` for an object that is not a ``gym.Env``);
            ``ours`` always uses :class:`OldApiAdapter`.
    """
    if via not in ("auto", "shimmy", "ours"):
        raise ValueError(f"via must be 'auto', 'shimmy' or 'ours', not {via!r}")
    if is_gym_env(env):
        _skip_numpy1_step_check(env)
    if via == "ours":
        return OldApiAdapter(env, render_mode=render_mode)
    if via == "shimmy":
        _import_shimmy()
        if not is_gym_env(env):
            raise TypeError(f"{type(env).__name__} is not a gym.Env; Shimmy's wrappers adapt only objects of the "
                            "gym package (via='auto' or 'ours' adapts duck-typed ones)")
        return shimmy_adapter(env, render_mode=render_mode)
    if is_gym_env(env) and _shimmy_available():
        return shimmy_adapter(env, render_mode=render_mode)
    return OldApiAdapter(env, render_mode=render_mode)


def shimmy_adapter(env: Any, render_mode: str | None = None) -> gym.Env:
    """Shimmy's wrapper for a real ``gym.Env``, chosen as Stable-Baselines3 chooses it: ``GymV26CompatibilityV0``
    when ``env.unwrapped.reset`` takes ``seed`` (the gym 0.26 API), else ``GymV21CompatibilityV0``.

    gym 0.26's ``PassiveEnvChecker`` (put on by ``gym.make``) checks the first ``step`` with ``np.bool8``,
    which NumPy 2 removed; where NumPy has no ``bool8`` that one check is marked done, so stepping works.
    """
    shimmy = _import_shimmy()
    _skip_numpy1_step_check(env)
    if "seed" in _params(getattr(getattr(env, "unwrapped", env), "reset", None)):
        own_mode = getattr(env, "render_mode", None)
        if render_mode is not None and own_mode != render_mode:
            raise ValueError(f"{type(env).__name__} was made with render_mode={own_mode!r}, not {render_mode!r}: "
                             "a gym 0.26 environment fixes its mode when made (pass the class or entry point "
                             "to make_env, which makes it with the mode asked for)")
        wrapped = shimmy.GymV26CompatibilityV0(env=env)
    else:
        wrapped = shimmy.GymV21CompatibilityV0(env=env, render_mode=render_mode)
    wrapped.spec = _gymnasium_spec(getattr(wrapped, "spec", None))
    return wrapped


def _gymnasium_spec(old: Any) -> gym.envs.registration.EnvSpec | None:
    """Gymnasium's ``EnvSpec`` with the fields of gym's (which Shimmy passes on as is, and which Gymnasium's
    wrappers cannot copy: it has no ``additional_wrappers``); None where there is none or it does not fit."""
    if old is None or isinstance(old, gym.envs.registration.EnvSpec):
        return old
    try:
        return gym.envs.registration.EnvSpec(
            id=str(old.id), entry_point=getattr(old, "entry_point", None),
            reward_threshold=getattr(old, "reward_threshold", None),
            nondeterministic=bool(getattr(old, "nondeterministic", False)),
            max_episode_steps=getattr(old, "max_episode_steps", None), kwargs=dict(getattr(old, "kwargs", {}) or {}))
    except Exception:  # an id Gymnasium cannot parse: better no spec than a wrong one
        return None


def _import_shimmy() -> Any:
    try:
        import gym  # noqa: F401  (Shimmy's wrappers need it; imported only when asked for)
        import shimmy
    except ImportError as e:
        raise ImportError(f"Shimmy's gym wrappers need shimmy and gym: pip install '{GYM_COMPAT_EXTRA}' ({e})") from e
    return shimmy


def _shimmy_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("shimmy") is not None  # None too where sys.modules["shimmy"] is None
    except (ImportError, ValueError):
        return False


def _skip_numpy1_step_check(env: Any) -> None:
    if int(np.__version__.split(".")[0]) < 2:  # np.bool8 still there (asking for it warns on 1.2x)
        return
    for _ in range(64):  # walk gym's wrapper chain (TimeLimit > OrderEnforcing > PassiveEnvChecker > env)
        if type(env).__name__ == "PassiveEnvChecker" and hasattr(env, "checked_step"):
            env.checked_step = True
        env = env.__dict__.get("env") if hasattr(env, "__dict__") else None
        if env is None:
            return


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
        params = _params(env.reset)  # gym 0.26's wrappers take reset(**kwargs), and pass seed on
        self._reset_takes_seed = "seed" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
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
