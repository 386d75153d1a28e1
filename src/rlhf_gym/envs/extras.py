"""Environment families that need an optional extra: Atari (``ale-py``), MinAtar (``minatar``), MuJoCo
(``mujoco``). Each is imported only when one of its ids is asked for, with an error naming the extra."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

#: id prefix or name -> (extra, module to import)
ATARI_PREFIX = "ALE/"
MINATAR_PREFIX = "MinAtar/"
MUJOCO_NAMES = ("Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "InvertedDoublePendulum",
                "InvertedPendulum", "Pusher", "Reacher", "Swimmer", "Walker2d")


def family(env_id: str) -> str | None:
    """``atari``, ``minatar``, ``mujoco`` or None (a plain Gymnasium id)."""
    if env_id.startswith(ATARI_PREFIX):
        return "atari"
    if env_id.startswith(MINATAR_PREFIX):
        return "minatar"
    if env_id.split("-")[0] in MUJOCO_NAMES:
        return "mujoco"
    return None


def _missing(env_id: str, extra: str, what: str) -> Exception:
    from rlhf_gym.envs.core import EnvError

    return EnvError(f"{env_id!r} needs {what}: pip install 'rlhf-gym[{extra}]'")


def prepare(env_id: str) -> None:
    """Import and register what ``env_id`` needs; raise :class:`EnvError` naming the extra if it is missing."""
    fam = family(env_id)
    if fam == "atari":
        try:
            import ale_py
        except ImportError as e:
            raise _missing(env_id, "atari", "the Arcade Learning Environment") from e
        gym.register_envs(ale_py)
    elif fam == "minatar":
        try:
            import minatar.gym as minatar_gym
        except ImportError as e:
            raise _missing(env_id, "minatar", "MinAtar") from e
        if env_id not in gym.registry:
            minatar_gym.register_envs()
    elif fam == "mujoco":
        import importlib.util

        if importlib.util.find_spec("mujoco") is None:  # not imported here: MUJOCO_GL must be set first
            raise _missing(env_id, "mujoco", "MuJoCo")
        from rlhf_gym.envs.headless import choose_gl

        choose_gl()


def explain(env_id: str, error: BaseException) -> None:
    """Re-raise a make failure as the missing extra where that is what it is."""
    text = str(error).lower()
    fam = family(env_id)
    if fam == "mujoco" and "mujoco" in text and ("install" in text or "no module" in text):
        raise _missing(env_id, "mujoco", "MuJoCo") from error


def preprocess(env_id: str, env: gym.Env) -> gym.Env:
    """The conventional observation pipeline of a pixel game (see :mod:`rlhf_gym.envs.pixels`)."""
    fam = family(env_id)
    if fam in ("atari", "minatar"):
        from rlhf_gym.envs import pixels

        return pixels.atari_preprocessing(env) if fam == "atari" else pixels.minatar_preprocessing(env)
    return env


def make_kwargs(env_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments the family's preprocessing needs at ``gym.make`` (Atari: frame skipping moves to the wrapper)."""
    if family(env_id) == "atari":
        return {"frameskip": 1, "obs_type": "grayscale", **kwargs}
    return kwargs
