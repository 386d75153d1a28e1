"""The one clip renderer: a replay shows the recorded episode, and refuses to show a different one."""

from __future__ import annotations

import numpy as np

from rlhf_gym.envs import make_env
from rlhf_gym.feedback.terminal_pairs import render_segment
from rlhf_gym.render import replay_frames
from rlhf_gym.rollouts import rollout, segment_at


def _episode(seed: int = 3):
    env = make_env("CartPole-v1")
    traj = rollout(env, lambda o: int(o[2] > 0), seed=seed)
    env.close()
    return traj


def test_replay_renders_the_recorded_states_and_detects_divergence():
    traj = _episode()
    env = make_env("CartPole-v1", render_mode="rgb_array")
    seen: list[np.ndarray] = []

    def render(e):  # record the state shown with each frame
        seen.append(np.array(e.unwrapped.state))
        return np.zeros((4, 4, 3), np.uint8)

    frames = replay_frames(env, traj.seed, list(traj.acts[:10]), start=2, expect_obs=traj.obs[2:11], render=render)
    assert len(frames) == 9
    assert np.allclose(np.stack(seen), traj.obs[2:11], atol=1e-6)
    wrong_seed = replay_frames(env, traj.seed + 1, list(traj.acts[:10]), expect_obs=traj.obs[:11], render=render)
    assert wrong_seed == []  # another episode is never shown in place of the recorded one
    env.close()


def test_terminal_clip_of_a_terminated_episode_greys_its_padding():
    traj = _episode()
    start = len(traj) - 5
    seg = segment_at(traj, start, 8)  # 5 real steps, 3 absorbing
    frames = render_segment(seg, prefix_acts=traj.acts)
    assert len(frames) == 9  # 6 real states (5 steps and the last) and 3 grey frames
    assert frames[-1].std(-1).max() == 0  # grey: the three channels are equal
    assert frames[0].std(-1).max() > 0
