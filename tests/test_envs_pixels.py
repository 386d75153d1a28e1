"""Pixel games: MinAtar and Atari observations as images, clips stored compactly beside the store, a CNN
policy and the CNN reward model in the preference loop, and errors naming the missing extra."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from rlhf_gym.envs import EnvError, make_env
from rlhf_gym.rollouts import rollout, segment_at
from rlhf_gym.types import PairQuery, Query

pytest.importorskip("minatar")


def clips(env_id: str, length: int = 50, seed: int = 0):
    env = make_env(env_id, seed=seed)
    traj = rollout(env, lambda _o: env.action_space.sample(), seed=seed, max_steps=2 * length)
    env.close()
    return segment_at(traj, 0, length), segment_at(traj, max(len(traj) - length, 0), length)


def test_pixel_observations_are_channel_first_uint8_images():
    env = make_env("MinAtar/Breakout-v1", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 10, 10) and obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 255}
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (160, 160, 3)
    pytest.importorskip("ale_py")
    env = make_env("ALE/Pong-v5", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    obs2, *_ = env.step(0)
    np.testing.assert_array_equal(obs2[:3], obs[1:])  # the stack shifts by one frame per step
    assert env.render().shape == (210, 160, 3)


def test_pixel_clips_round_trip_through_the_store_compactly(tmp_path):
    pytest.importorskip("ale_py")
    from rlhf_gym.store import FeedbackStore

    left, right = clips("ALE/Pong-v5")
    raw = left.obs.nbytes + left.next_obs.nbytes + right.obs.nbytes + right.next_obs.nbytes  # 5.6 MB
    q = PairQuery.make(left, right, run_id="run-px")
    store = FeedbackStore(tmp_path / "feedback.db")
    store.add_queries([q])
    with store.session() as s:
        from rlhf_gym.store.schema import QueryRow

        payload = s.get(QueryRow, q.id).payload
    row_bytes = len(json.dumps(payload))
    assert row_bytes < 4_000, row_bytes  # the database row holds references, not pixels
    assert payload["left"]["obs"]["frames"].endswith(".npz")
    files = store.frames.size()
    assert 0 < files < raw / 20, (files, raw)  # compressed files beside the store
    assert (tmp_path / "feedback.frames").is_dir()
    back = store.query(q.id)
    for a, b in ((back.left, left), (back.right, right)):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.next_obs, b.next_obs)
        np.testing.assert_array_equal(a.acts, b.acts)
        assert a.obs.dtype == np.uint8
    # without a store folder (exports, HTTP) the frames travel inline, compressed: still no pixel lists
    inline = json.dumps(q.to_dict())
    assert len(inline) < raw / 10 and "npz_b64" in inline
    again = Query.from_dict(json.loads(inline))
    np.testing.assert_array_equal(again.left.obs, left.obs)
    # the label export carries the clips and imports into a fresh store with its own frames folder
    from rlhf_gym.types import Feedback

    store.add_annotator("sim", kind="simulated")
    store.add_feedback(Feedback(q.id, "sim", 1.0, q.created_at, q.created_at + 1))
    store.export_jsonl(tmp_path / "labels.jsonl")
    other = FeedbackStore(tmp_path / "other" / "feedback.db")
    assert other.import_jsonl(tmp_path / "labels.jsonl") == 1
    np.testing.assert_array_equal(other.query(q.id).right.obs, right.obs)
    assert other.frames.size() == files
    store.close()
    other.close()


def test_vector_clips_are_stored_as_before_and_bad_frame_references_are_refused(tmp_path):
    from rlhf_gym.store.frames import FrameFiles

    left, right = clips("CartPole-v1", length=10)
    d = PairQuery.make(left, right).to_dict()
    assert isinstance(d["payload"]["left"]["obs"], list)  # no change for vector observations
    codec = FrameFiles(tmp_path)
    ref = codec.encode(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="bad frames reference"):
        codec.decode({**ref, "frames": "../../etc/passwd.npz"})
    with pytest.raises(ValueError, match="reference says"):
        codec.decode({**ref, "shape": [3, 8, 9]})


def test_missing_pixel_extras_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "minatar", None)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    with pytest.raises(EnvError, match=r"rlhf-gym\[minatar\]"):
        make_env("MinAtar/Asterix-v1")


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "ALE/Pong-v5"])
def test_check_env_on_the_pixel_pipelines(env_id):
    from gymnasium.utils.env_checker import check_env

    if env_id.startswith("ALE/"):
        pytest.importorskip("ale_py")
    env = make_env(env_id)
    check_env(env, skip_render_check=True)  # through every wrapper we add (stack, resize, image conversion)
    env.close()


def test_a_stored_pixel_clip_replays_to_the_same_observations():
    """Clips are re-rendered from (seed, actions): the replay must reproduce the recorded frames exactly."""
    for env_id in ("MinAtar/Breakout-v1", "ALE/Pong-v5"):
        if env_id.startswith("ALE/"):
            pytest.importorskip("ale_py")
        left, _ = clips(env_id, length=20, seed=4)
        env = make_env(env_id)
        obs, _ = env.reset(seed=left.seed)
        for t in range(int((~left.absorbing).sum())):
            np.testing.assert_array_equal(obs, left.obs[t])
            obs, *_ = env.step(left.acts[t].item())
        env.close()


def test_image_observations_get_a_cnn_policy():
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_gym.learners.pixel_policy import sb3_policy
    from rlhf_gym.learners.preference import make_algo

    assert sb3_policy(gym.spaces.Box(-1, 1, (4,)))[0] == "MlpPolicy"
    assert sb3_policy(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)) == ("CnnPolicy", {})
    venv = make_vec_env(lambda: make_env("MinAtar/Breakout-v1"), n_envs=2, seed=0)
    algo = make_algo("ppo", venv, seed=0, timesteps=64, device="cpu")
    assert type(algo.policy.features_extractor).__name__ == "SmallCNN"
    obs = venv.reset()
    assert algo.predict(obs)[0].shape == (2,)
