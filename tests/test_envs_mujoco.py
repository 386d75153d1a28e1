"""MuJoCo tasks: headless rendering chosen automatically (or a clear message when none works), errors naming
the extra, and InvertedPendulum-v5 end to end through the preference loop with its clips rendered."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from rlhf_gym.envs import EnvError, headless, make_env

pytest.importorskip("mujoco")


def test_a_missing_mujoco_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mujoco" else real(name, *a))
    with pytest.raises(EnvError, match=r"rlhf-gym\[mujoco\]"):
        make_env("Hopper-v5")


def test_headless_gl_is_chosen_or_explained(monkeypatch, capsys):
    monkeypatch.setattr(headless, "_chosen", False)
    for var in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY"):  # recorded, so the teardown restores them
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    tried = []
    monkeypatch.setattr(headless, "works", lambda b: tried.append(b) or b == "osmesa")
    assert headless.choose_gl() == "osmesa" and tried == ["egl", "osmesa"]
    import os

    assert os.environ["MUJOCO_GL"] == "osmesa"
    monkeypatch.setattr(headless, "_chosen", False)
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr(headless, "works", lambda b: False)
    assert headless.choose_gl() is None
    assert "no headless OpenGL works for MuJoCo" in capsys.readouterr().err
    monkeypatch.setattr(headless, "_chosen", False)
    monkeypatch.setenv("MUJOCO_GL", "egl")  # the user's choice is kept, untested
    assert headless.choose_gl() == "egl"


def test_mujoco_clips_render_headless_and_replay_exactly():
    from rlhf_gym.feedback.terminal_pairs import render_segment
    from rlhf_gym.rollouts import rollout, segment_at

    env = make_env("InvertedPendulum-v5", seed=0)
    traj = rollout(env, lambda _o: env.action_space.sample(), seed=3)
    seg = segment_at(traj, 0, min(5, len(traj)))
    if headless.choose_gl() is None:
        pytest.skip("no headless OpenGL on this machine")
    frames = render_segment(seg)
    assert len(frames) == len(seg) + 1 and frames[0].shape == (480, 480, 3)
    assert frames[0].std() > 5  # a drawn scene, not a blank buffer
    assert not np.array_equal(frames[0], frames[-1])  # the pendulum moved
