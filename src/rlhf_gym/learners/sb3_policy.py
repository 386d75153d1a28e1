"""Loading a Stable-Baselines3 policy saved in a run folder as a deterministic ``obs -> action`` callable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ALGOS = ("ppo", "sac", "dqn")


def _algo_class(name: str) -> Any:
    from stable_baselines3 import DQN, PPO, SAC

    classes = {"ppo": PPO, "sac": SAC, "dqn": DQN}
    if name not in classes:
        raise ValueError(f"unknown SB3 algorithm {name!r} in policy.json; expected one of {', '.join(ALGOS)}")
    return classes[name]


def load_sb3_policy(run_dir: str | Path, info: dict[str, Any]) -> Any:
    """Rebuild the SB3 model named by ``policy.json`` (``{"kind": "sb3", "path": ..., "algo": ...}``).

    SB3 zips hold the network weights as a PyTorch state dict (loaded with ``weights_only``) and
    the hyperparameters as JSON; they are files this project wrote, not uploads.
    """
    path = Path(run_dir) / info["path"]
    if not path.exists():
        raise FileNotFoundError(f"policy file {path} named in policy.json does not exist")
    model = _algo_class(info.get("algo", "ppo")).load(str(path), device="cpu")
    return greedy(model, bool(info.get("discrete", False)))


def greedy(model: Any, discrete: bool) -> Callable[[np.ndarray], Any]:
    """The deterministic ``obs -> action`` of an SB3 model (an int for discrete actions): how every expert,
    demonstrator and saved SB3 policy acts."""

    def act(obs: np.ndarray) -> Any:
        a, _ = model.predict(np.asarray(obs), deterministic=True)
        return int(a) if discrete else np.asarray(a)

    return act
