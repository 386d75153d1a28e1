"""Vector-reward environments: MO-Gymnasium's, and any Gymnasium environment with named reward components.

A vector-reward environment returns a numpy vector from ``step`` (one entry per objective) and has a
``reward_space`` (a ``Box``) whose shape gives the number of objectives, as MO-Gymnasium does. Objective
names come from :data:`OBJECTIVE_NAMES` for the MO-Gymnasium tasks we know, from the wrapper for
user-defined components, and are ``objective 0, 1, ...`` otherwise.

Writing your own takes a few lines: give :class:`VectorRewardWrapper` one function per objective, each
seeing one step (``obs, action, reward, next_obs, terminated, info``)::

    def make_cartpole_mo() -> gym.Env:
        return VectorRewardWrapper(gym.make("CartPole-v1"), {
            "survival": lambda o, a, r, o2, term, info: r,           # 1 per step alive
            "centred": lambda o, a, r, o2, term, info: -abs(o2[0]),  # stay near the middle
        })
    register_vector_env("mo-cartpole-v1", make_cartpole_mo)

after which ``rlhf-gym train --env mo-cartpole-v1 --feedback tradeoff ...`` works (that one is
registered below as the example).

MO-Gymnasium is the optional extra ``morl`` (``pip install 'rlhf-gym[morl]'``), imported only when one of
its environments is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from rlhf_gym.envs import EnvError

Component = Callable[[Any, Any, float, Any, bool, dict], float]
"""One objective's reward for one step: ``f(obs, action, reward, next_obs, terminated, info) -> float``."""

#: MO-Gymnasium ids known to work here, with their objectives' names (others work unnamed).
OBJECTIVE_NAMES: dict[str, tuple[str, ...]] = {
    "deep-sea-treasure-v0": ("treasure", "time"),
    "deep-sea-treasure-concave-v0": ("treasure", "time"),
    "minecart-v0": ("ore 1", "ore 2", "fuel"),
    "minecart-deterministic-v0": ("ore 1", "ore 2", "fuel"),
    "four-room-v0": ("item 1", "item 2", "item 3"),
    "resource-gathering-v0": ("death", "gold", "gem"),
    "mo-mountaincar-v0": ("time", "reverse", "forward"),
    "fruit-tree-v0": ("protein", "carbs", "fats", "vitamins", "minerals", "water"),
    "mo-lunar-lander-v3": ("landed", "shaped", "main engine", "side engine"),
}

#: user-registered vector-reward environments: id -> factory
VECTOR_ENVS: dict[str, Callable[..., gym.Env]] = {}


def register_vector_env(env_id: str, factory: Callable[..., gym.Env]) -> None:
    """Make ``env_id`` available to :func:`make_vector_env` (and so to ``--feedback tradeoff``)."""
    VECTOR_ENVS[env_id] = factory


class VectorRewardWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Turns a scalar-reward environment into a vector-reward one from named reward components.

    Args:
        env: any Gymnasium environment.
        components: objective name -> function of one step (see :data:`Component`); the order is the
            order of the reward vector.
        bounds: optional (low, high) of each component per step, for ``reward_space`` (default unbounded).
    """

    def __init__(self, env: gym.Env, components: Mapping[str, Component],
                 bounds: Mapping[str, tuple[float, float]] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, components=components, bounds=bounds)
        super().__init__(env)
        if not components:
            raise ValueError("VectorRewardWrapper needs at least one reward component")
        self.components = dict(components)
        self.objective_names = tuple(self.components)
        b = bounds or {}
        low = np.array([b.get(n, (-np.inf, np.inf))[0] for n in self.objective_names], np.float32)
        high = np.array([b.get(n, (-np.inf, np.inf))[1] for n in self.objective_names], np.float32)
        self.reward_space = gym.spaces.Box(low, high, dtype=np.float32)
        self._obs: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, np.ndarray, bool, bool, dict]:  # type: ignore[override]
        obs, r, terminated, truncated, info = self.env.step(action)
        vec = np.array([float(f(self._obs, action, float(r), obs, bool(terminated), info))
                        for f in self.components.values()], np.float32)
        self._obs = obs
        return obs, vec, terminated, truncated, info


def _cartpole_mo(**kwargs: Any) -> gym.Env:
    """The documented example: CartPole's survival (1 per step) against staying centred (-|x| per step)."""
    return VectorRewardWrapper(gym.make("CartPole-v1", **kwargs), {
        "survival": lambda o, a, r, o2, term, info: r,
        "centred": lambda o, a, r, o2, term, info: -abs(float(o2[0])),
    }, bounds={"survival": (0.0, 1.0), "centred": (-2.4, 0.0)})


register_vector_env("mo-cartpole-v1", _cartpole_mo)


def _import_mo_gymnasium() -> Any:
    import warnings

    try:
        with warnings.catch_warnings():  # Box precision notes from MO-Gymnasium's spaces, made at import
            warnings.simplefilter("ignore", UserWarning)
            import mo_gymnasium
    except ImportError as e:
        raise EnvError("multi-objective environments need MO-Gymnasium: pip install 'rlhf-gym[morl]'") from e
    return mo_gymnasium


def make_vector_env(env_id: str, seed: int | None = None, render_mode: str | None = None,
                    **kwargs: Any) -> gym.Env:
    """A vector-reward environment by id: a registered one (:func:`register_vector_env`) or MO-Gymnasium's.

    Raises:
        EnvError: unknown id, MO-Gymnasium missing, or an environment whose reward is a scalar (with
            a hint on how to give it named components).
    """
    if env_id in VECTOR_ENVS:
        env = VECTOR_ENVS[env_id](render_mode=render_mode, **kwargs)
    else:
        import warnings

        mo = _import_mo_gymnasium()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                env = mo.make(env_id, render_mode=render_mode, **kwargs)
        except gym.error.Error as e:
            raise EnvError(f"unknown or unavailable environment {env_id!r}: {e}") from e
    if not isinstance(getattr(env.unwrapped, "reward_space", None), gym.spaces.Box) and not isinstance(
            getattr(env, "reward_space", None), gym.spaces.Box):
        env.close()
        raise EnvError(f"{env_id!r} has a scalar reward, but --feedback tradeoff needs several objectives: use a "
                       "multi-objective environment (deep-sea-treasure-v0, minecart-v0, fruit-tree-v0, ...) or give "
                       "it named reward components with rlhf_gym.morl.envs.VectorRewardWrapper")
    if seed is not None:
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def reward_space(env: gym.Env) -> gym.spaces.Box:
    """The reward space of a vector-reward environment (the wrapper's, or the base environment's)."""
    space = getattr(env, "reward_space", None)
    if not isinstance(space, gym.spaces.Box):
        space = env.unwrapped.reward_space  # type: ignore[attr-defined]
    return space


def n_objectives(env: gym.Env) -> int:
    return int(reward_space(env).shape[0])


def objective_names(env_id: str, env: gym.Env) -> tuple[str, ...]:
    """Names of the objectives, in reward-vector order."""
    k = n_objectives(env)
    names = getattr(env, "objective_names", None) or OBJECTIVE_NAMES.get(env_id)
    if names is None or len(names) != k:
        names = tuple(f"objective {i}" for i in range(k))
    return tuple(names)


class ScalarisedReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Vector reward -> ``weights @ reward``, for single-objective learners (SB3) and :func:`evaluate_policy`.

    The vector stays in ``info["vector_reward"]``; ``weights`` is a plain attribute (a sweep or a
    fine-tune swaps it without rebuilding the environment). Finished episodes' vector returns are kept
    in :attr:`episode_returns` so an evaluation gets each objective's return with the ordinary rollout.
    """

    def __init__(self, env: gym.Env, weights: Any) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, weights=weights)
        super().__init__(env)
        self.weights = np.asarray(weights, np.float64)
        k = n_objectives(env)
        if self.weights.shape != (k,):
            raise ValueError(f"{k} objectives need {k} weights, got {self.weights.tolist()}")
        self.episode_returns: list[np.ndarray] = []
        self._ret = np.zeros(k)

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self._ret = np.zeros_like(self._ret)
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, r, terminated, truncated, info = self.env.step(action)
        vec = np.asarray(r, np.float64).reshape(-1)
        info = dict(info)
        info["vector_reward"] = vec
        self._ret += vec
        if terminated or truncated:
            self.episode_returns.append(self._ret.copy())
        return obs, float(self.weights @ vec), terminated, truncated, info
