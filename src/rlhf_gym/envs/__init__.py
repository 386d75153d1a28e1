"""Environments: making them (registered ids, entry points, old-``gym``-API objects, pixel games with
their preprocessing, MuJoCo headless), reading what a learner needs of them, rendering frames."""

from rlhf_gym.envs.core import (
    EnvError,
    EnvLike,
    EnvSpec,
    env_spec,
    load_entry_point,
    make_env,
    make_registered_env,
    require_discrete,
    spec_of,
    try_render,
)
from rlhf_gym.envs.old_api import OldApiAdapter, adapt_old_api, is_gym_env, is_old_api, shimmy_adapter

__all__ = ["EnvError", "EnvLike", "EnvSpec", "OldApiAdapter", "adapt_old_api", "env_spec", "is_gym_env",
           "is_old_api", "load_entry_point", "make_env", "make_registered_env", "require_discrete",
           "shimmy_adapter", "spec_of", "try_render"]
