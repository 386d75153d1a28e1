"""Environments written for the old ``gym`` API run through our adapter: spaces, seeding, done/truncation,
``check_env``, entry points, and the classic terminal tutorial (examples/old_gym_tutorial.py) driven by a
scripted person who reads each question and answers it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from _old_api_shapes import Box, Discrete
from rlhf_gym.envs import EnvError, OldApiAdapter, is_old_api, make_env

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "examples" / "old_gym_tutorial.py"


class WalkEnv:
    """Old API: a walker on a line; done at |x| >= 3 (terminal), or after 10 steps (time limit)."""

    def __init__(self):
        self.observation_space = Box(-5.0, 5.0, (2,), np.float32)
        self.action_space = Discrete(2)
        self.rng = np.random.RandomState(0)
        self.x, self.t = 0.0, 0

    def seed(self, seed=None):
        self.rng = np.random.RandomState(seed)
        return [seed]

    def reset(self):
        self.x, self.t = float(self.rng.uniform(-1, 1)), 0
        return np.array([self.x, 0.0])  # float64, as old envs often returned

    def step(self, action):
        self.x += (1.0 if action == 1 else -1.0) + float(self.rng.normal(0, 0.1))
        self.t += 1
        if abs(self.x) >= 3:
            return np.array([self.x, self.t]), 1.0, True, {}
        if self.t >= 10:
            return np.array([self.x, self.t]), 0.0, True, {"TimeLimit.truncated": True}
        return np.array([self.x, self.t]), 0.0, False, {"t": self.t}


def test_adapter_converts_spaces_seeding_and_done():
    raw = WalkEnv()
    assert is_old_api(raw) and not is_old_api(make_env("CartPole-v1"))
    env = make_env(raw)
    assert isinstance(env, OldApiAdapter)
    assert env.observation_space.dtype == np.float32 and env.action_space.n == 2
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (2,) and info == {}
    obs2, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, obs2)
    assert not np.array_equal(obs, env.reset(seed=4)[0])
    env.reset(seed=0)
    for _ in range(3):  # walks right: |x| >= 3 within 4 steps is a real termination
        obs, r, term, trunc, info = env.step(1)
        if term:
            break
    assert term and not trunc and r == 1.0
    env.reset(seed=0)
    for _ in range(10):  # back and forth: the old TimeLimit's flag becomes truncated
        out = env.step(env._t % 2)
    assert out[2:4] == (False, True) and "TimeLimit.truncated" not in out[4]
    check_env(env, skip_render_check=True)


def test_make_env_takes_classes_entry_points_and_names_bad_ones():
    for spec in (WalkEnv, f"{Path(__file__)}:WalkEnv", TUTORIAL.as_posix() + ":CartPoleEnv"):
        env = make_env(spec, seed=1)
        assert isinstance(env, OldApiAdapter)
        obs, _ = env.reset(seed=1)
        assert env.observation_space.contains(obs)
        check_env(env, skip_render_check=True)
    with pytest.raises(EnvError, match="no_such_module"):
        make_env("no_such_module:Env")
    with pytest.raises(EnvError, match="no file"):
        make_env("missing/file.py:Env")
    with pytest.raises(EnvError, match="not an environment"):
        make_env(lambda: object())


def test_tutorial_env_matches_gymnasium_cartpole_dynamics():
    """The old-API CartPole is the classic one: same physics as Gymnasium's from the same state."""
    ours, ref = make_env(f"{TUTORIAL}:CartPoleEnv"), make_env("CartPole-v1")
    ours.reset(seed=0)
    ref.reset(seed=0)
    ref.unwrapped.state = np.array(ours.env.state)
    for a in [1, 0, 0, 1, 1, 1, 0]:
        o1, r1, t1, _, _ = ours.step(a)
        o2, r2, t2, _, _ = ref.step(a)
        np.testing.assert_allclose(o1, o2, rtol=1e-5, atol=1e-6)
        assert r1 == r2 and t1 == t2


PROMPT = "stop and save) "


def drive_tutorial(tmp_path: Path, budget: int, rule) -> tuple[str, list[str], dict]:
    """Run the tutorial as a person would: read each question off the terminal, answer it with ``rule``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    out_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(TUTORIAL), "--budget", str(budget), "--out", str(out_dir)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=tmp_path)
    assert proc.stdin is not None and proc.stdout is not None
    buf, sent = b"", []
    while True:
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        text = buf.decode(errors="replace")
        if text.endswith("(yes/no) ") and "yes\n" not in sent:
            sent.append("yes\n")
        elif text.endswith(PROMPT):
            question = text[text.rfind("The agent sees:"):]
            obs = [float(v) for v in re.findall(r"obs\[\d\]\s+(\S+)", question)]
            action = int(re.findall(r"It chose action (\d)", question)[-1])
            sent.append(f"{rule(obs, action)}\n")
        else:
            continue
        proc.stdin.write(sent[-1].encode())
        proc.stdin.flush()
    assert proc.wait(timeout=120) == 0, buf.decode()[-3000:]
    from rlhf_gym.store import FeedbackStore

    store = FeedbackStore(out_dir / "feedback.db")
    values = [f.value for f in store.feedback()]
    store.close()
    ret = float(re.search(r"true return of the trained agent: (\S+)", buf.decode()).group(1))
    return buf.decode(), sent, {"values": values, "return": ret}


def good_push(obs, action):
    """A person's rule of thumb: pushing towards where the pole is falling is right."""
    return int(action == int(obs[2] + 0.5 * obs[3] > 0))


def test_tutorial_runs_unchanged_through_the_adapter_with_scripted_answers(tmp_path):
    text, sent, got = drive_tutorial(tmp_path, budget=40, rule=good_push)
    assert "Was the action correct? (0/1" in text and "Do you agree to take part?" in text
    answers = [float(s) for s in sent[1:]]
    assert len(answers) == 40 and got["values"] == answers  # every answer stored as the person gave it
    _, _, wrong = drive_tutorial(tmp_path / "inverted", budget=40, rule=lambda o, a: 1 - good_push(o, a))
    # taught right, the agent balances far longer than when taught the opposite
    assert got["return"] > 100 and got["return"] > 3 * wrong["return"], (got["return"], wrong["return"])


def test_preference_loop_runs_on_an_old_api_entry_point(tmp_path):
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.pipeline import evaluate_run, train

    cfg = TrainConfig(env=f"{TUTORIAL}:CartPoleEnv", feedback="preference", teacher="oracle", budget=6,
                      timesteps=1024, segment_length=20, eval_episodes=2, out=str(tmp_path / "pref"), progress=False,
                      extra={"n_envs": 2, "eval_points": 1, "round_eval_episodes": 1, "query_episodes": 2})
    res = train(cfg)
    assert res["feedback_used"] == 6 and res["algo"] == "ppo"
    assert evaluate_run(cfg.out, episodes=2)["episodes"] == 2
