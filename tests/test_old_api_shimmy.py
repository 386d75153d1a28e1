"""Old-API objects through ``make_env``: real ``gym.Env`` objects go through Shimmy's wrappers where gym and
Shimmy are installed (the extra ``rlhf-gym[gym-compat]``; those tests skip without them), everything else
through our duck-typed adapter, which also takes gym 0.26's shape (``reset`` -> ``(obs, info)``, 5-tuple
``step``, no ``seed()``). The 4-tuple API itself is tested in tests/test_envs_old_api.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from _old_api_shapes import Box, Discrete
from rlhf_gym.envs import OldApiAdapter, adapt_old_api, is_gym_env, is_old_api, make_env

ROOT = Path(__file__).resolve().parents[1]


class NewStyleWalk:
    """gym 0.26's API, duck-typed: reset(seed, options) -> (obs, info), 5-tuple step, no seed() method."""

    def __init__(self):
        self.observation_space = Box(-20.0, 20.0, (2,), np.float32)
        self.action_space = Discrete(2)
        self.rng = np.random.default_rng(0)
        self.x, self.t = 0.0, 0

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.x, self.t = float(self.rng.uniform(-1, 1)), 0
        return np.array([self.x, 0.0]), {"start": self.x}

    def step(self, action):
        self.x += (1.0 if action == 1 else -1.0) + float(self.rng.normal(0, 0.1))
        self.t += 1
        obs = np.array([self.x, self.t], dtype=np.float64)
        return obs, float(abs(self.x) >= 3), abs(self.x) >= 3, self.t >= 8 and abs(self.x) < 3, {}


class KwargsResetWalk(NewStyleWalk):
    """As gym 0.26's wrappers are: reset(**kwargs), passing the seed on."""

    def reset(self, **kwargs):
        return super().reset(**kwargs)


@pytest.mark.parametrize("cls", [NewStyleWalk, KwargsResetWalk])
def test_duck_typed_gym026_api_goes_through_our_adapter(cls):
    raw = cls()
    assert is_old_api(raw) and not is_gym_env(raw)  # was "not an environment" before the 0.26 shape counted
    env = make_env(raw)
    assert isinstance(env, OldApiAdapter)
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and info["start"] == pytest.approx(obs[0])
    np.testing.assert_array_equal(obs, env.reset(seed=3)[0])
    assert not np.array_equal(obs, env.reset(seed=4)[0])
    env.reset(seed=0)
    for _ in range(8):  # back and forth: never |x| >= 3, so the 8-step limit truncates
        out = env.step(env._t % 2)
    assert len(out) == 5 and out[2:4] == (False, True)
    env.reset(seed=0)
    for _ in range(4):
        out = env.step(1)
        if out[2]:
            break
    assert out[2] and not out[3] and out[1] == 1.0
    check_env(env, skip_render_check=True)


def test_without_gym_the_duck_typed_adapter_is_used_and_gym_never_imported():
    """A clean interpreter: making a duck-typed env imports neither gym nor shimmy, whether installed or not."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from test_old_api_shimmy import NewStyleWalk\n"
        "from test_envs_old_api import WalkEnv\n"
        "from rlhf_gym.envs import OldApiAdapter, make_env\n"
        "for cls in (NewStyleWalk, WalkEnv):\n"
        "    e = make_env(cls()); e.reset(seed=1); e.step(0); assert isinstance(e, OldApiAdapter), type(e)\n"
        "print(sorted(m for m in ('gym', 'shimmy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests")], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_asking_for_shimmy_without_it_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "shimmy", None)  # `import shimmy` now raises ImportError
    with pytest.raises(ImportError, match=r"rlhf-gym\[gym-compat\]"):
        adapt_old_api(NewStyleWalk(), via="shimmy")
    assert isinstance(adapt_old_api(NewStyleWalk()), OldApiAdapter)  # auto: our adapter, no error
    with pytest.raises(ValueError, match="via must be"):
        adapt_old_api(NewStyleWalk(), via="shim")


# ---- real gym objects (gym 0.26.2 + Shimmy 2, the extra gym-compat) ----


@pytest.fixture
def gym_and_shimmy():
    gym = pytest.importorskip("gym", reason="gym is not installed (pip install 'rlhf-gym[gym-compat]')")
    shimmy = pytest.importorskip("shimmy", reason="shimmy is not installed (pip install 'rlhf-gym[gym-compat]')")
    return gym, shimmy


def make_gym_walk(gym):
    """A tiny gym 0.26 env: gym's spaces and its np_random, seeded through reset(seed=...)."""

    class GymWalk(gym.Env):
        metadata = {"render_modes": []}

        def __init__(self):
            self.observation_space = gym.spaces.Box(-20.0, 20.0, (2,), np.float32)
            self.action_space = gym.spaces.Discrete(2)
            self.x, self.t = 0.0, 0

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.x, self.t = float(self.np_random.uniform(-1, 1)), 0
            return np.array([self.x, 0.0], dtype=np.float32), {}

        def step(self, action):
            self.x += (1.0 if action == 1 else -1.0) + float(self.np_random.normal(0, 0.1))
            self.t += 1
            term = abs(self.x) >= 3
            return np.array([self.x, self.t], dtype=np.float32), float(term), term, self.t >= 8 and not term, {}

    return GymWalk


def make_gym_legacy(gym):
    """A gym.Env subclass still written for gym 0.21: reset() -> obs, 4-tuple step, seed()."""

    class LegacyWalk(gym.Env):
        metadata = {"render.modes": []}

        def __init__(self):
            self.observation_space = gym.spaces.Box(-20.0, 20.0, (2,), np.float32)
            self.action_space = gym.spaces.Discrete(2)
            self.rng = np.random.RandomState(0)
            self.x, self.t = 0.0, 0

        def seed(self, seed=None):
            self.rng = np.random.RandomState(seed)
            return [seed]

        def reset(self):
            self.x, self.t = float(self.rng.uniform(-1, 1)), 0
            return np.array([self.x, 0.0], dtype=np.float32)

        def step(self, action):
            self.x += (1.0 if action == 1 else -1.0) + float(self.rng.normal(0, 0.1))
            self.t += 1
            obs = np.array([self.x, self.t], dtype=np.float32)
            if abs(self.x) >= 3:
                return obs, 1.0, True, {}
            return obs, 0.0, self.t >= 8, {"TimeLimit.truncated": True} if self.t >= 8 else {}

    return LegacyWalk


def test_gym026_subclass_goes_through_shimmy_v26(gym_and_shimmy):
    gym, shimmy = gym_and_shimmy
    raw = make_gym_walk(gym)()
    assert is_gym_env(raw) and is_old_api(raw)
    env = make_env(raw, seed=0)
    assert isinstance(env, shimmy.GymV26CompatibilityV0)
    obs, info = env.reset(seed=7)
    np.testing.assert_array_equal(obs, env.reset(seed=7)[0])
    assert not np.array_equal(obs, env.reset(seed=8)[0])
    env.reset(seed=0)
    for _ in range(8):
        out = env.step(env.gym_env.t % 2)
    assert len(out) == 5 and out[2:4] == (False, True)
    check_env(env, skip_render_check=True)


def test_gym_make_cartpole_goes_through_shimmy_and_matches_gymnasium(gym_and_shimmy):
    gym, shimmy = gym_and_shimmy
    env = make_env(gym.make("CartPole-v1"))  # TimeLimit > OrderEnforcing > PassiveEnvChecker: steps on NumPy 2
    assert isinstance(env, shimmy.GymV26CompatibilityV0)
    assert env.spec.id == "CartPole-v1" and env.spec.max_episode_steps == 500 and env.spec.reward_threshold == 475
    ref = make_env("CartPole-v1")
    (o1, _), (o2, _) = env.reset(seed=0), ref.reset(seed=0)
    np.testing.assert_allclose(o1, o2)  # gym 0.26 and Gymnasium seed CartPole the same way
    for a in [1, 0, 0, 1, 1, 1, 0]:
        s1, s2 = env.step(a), ref.step(a)
        np.testing.assert_allclose(s1[0], s2[0], rtol=1e-5, atol=1e-6)
        assert s1[1:4] == s2[1:4]
    steps, done = 0, False
    while not done:
        _, _, term, trunc, _ = env.step(0)
        steps, done = steps + 1, term or trunc
    assert term and steps < 100
    from gymnasium.wrappers import RecordEpisodeStatistics

    assert RecordEpisodeStatistics(env).spec.additional_wrappers  # Gymnasium's spec, not gym's
    entry = make_env("gym.envs.classic_control:CartPoleEnv", render_mode="rgb_array")
    assert isinstance(entry, shimmy.GymV26CompatibilityV0) and entry.render_mode == "rgb_array"


def test_legacy_gym_subclass_goes_through_shimmy_v21(gym_and_shimmy):
    gym, shimmy = gym_and_shimmy
    env = make_env(make_gym_legacy(gym))
    assert isinstance(env, shimmy.GymV21CompatibilityV0)
    obs, info = env.reset(seed=3)
    np.testing.assert_array_equal(obs, env.reset(seed=3)[0])
    env.reset(seed=0)
    for _ in range(8):
        out = env.step(env.gym_env.t % 2)
    assert out[2:4] == (False, True)  # the old TimeLimit flag is truncation
    # (no check_env here: Shimmy's V21 wrapper seeds through seed() and never calls Gymnasium's
    # super().reset(seed=...), so check_env's "np_random was seeded" assertion fails on it)


def test_real_gym_env_without_shimmy_falls_back_to_our_adapter(gym_and_shimmy, monkeypatch):
    gym, _ = gym_and_shimmy
    monkeypatch.setitem(sys.modules, "shimmy", None)
    env = make_env(gym.make("CartPole-v1"))  # reset(**kwargs) wrappers, no seed() method
    assert isinstance(env, OldApiAdapter)
    o1, _ = env.reset(seed=0)
    np.testing.assert_array_equal(o1, env.reset(seed=0)[0])
    assert len(env.step(0)) == 5
    assert isinstance(adapt_old_api(make_gym_walk(gym)(), via="ours"), OldApiAdapter)


def test_shimmy_asked_for_explicitly(gym_and_shimmy):
    gym, shimmy = gym_and_shimmy
    with pytest.raises(TypeError, match="not a gym.Env"):
        adapt_old_api(NewStyleWalk(), via="shimmy")
    assert isinstance(adapt_old_api(make_gym_walk(gym)(), via="shimmy"), shimmy.GymV26CompatibilityV0)
    with pytest.raises(ValueError, match="render_mode"):
        adapt_old_api(gym.make("CartPole-v1"), render_mode="rgb_array")


def test_preference_loop_runs_on_a_gym_entry_point(gym_and_shimmy, tmp_path):
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.pipeline import evaluate_run, train

    cfg = TrainConfig(env="gym.envs.classic_control:CartPoleEnv", feedback="preference", teacher="oracle",
                      budget=6, timesteps=1024, segment_length=20, eval_episodes=2, out=str(tmp_path / "pref"),
                      progress=False,
                      extra={"n_envs": 2, "eval_points": 1, "round_eval_episodes": 1, "query_episodes": 2})
    res = train(cfg)
    assert res["feedback_used"] == 6 and res["algo"] == "ppo"
    assert evaluate_run(cfg.out, episodes=2)["episodes"] == 2
