"""The CNN reward model for image observations, on a tiny synthetic pixel world (no Atari needed).

A bright 4x4 square moves on a dark 16x16 RGB image. Every step pays ``1 + column / 5``, so clips
further right are better, and the episode terminates when the square walks off into the left
column, so ending early is worse than staying alive (the absorbing state pays 0). The reward can only
be read off the pixels.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhf_gym.feedback.selection import candidate_pairs, select_pairs
from rlhf_gym.rewards import models
from rlhf_gym.rewards.diagnostics import heldout_accuracy
from rlhf_gym.rewards.models import PixelFeatures, RewardModel, RewardModelConfig
from rlhf_gym.rewards.training import (
    RewardTrainConfig,
    fit_reward_model,
    make_pair_data,
    normalise_output,
    reinitialise,
)
from rlhf_gym.rollouts import rollout, segment_at
from rlhf_gym.types import Segment, Trajectory

CELLS = 6  # the square sits on a 6x6 grid of positions


class SquareWorld(gym.Env):
    """A square on a 16x16 image; actions move it up, down, left, right; column 0 ends the episode."""

    metadata: dict = {"render_modes": []}

    def __init__(self, channels_last: bool = True) -> None:
        self.channels_last = channels_last
        shape = (16, 16, 3) if channels_last else (3, 16, 16)
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(4)
        self.pos = (0, 0)

    def _image(self) -> np.ndarray:
        img = np.full((16, 16, 3), (20, 20, 40), np.uint8)
        r, c = self.pos
        img[2 * r + 1:2 * r + 5, 2 * c + 1:2 * c + 5] = (230, 230, 60)
        return img if self.channels_last else np.ascontiguousarray(img.transpose(2, 0, 1))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos = (int(self.np_random.integers(CELLS)), int(self.np_random.integers(1, CELLS)))
        return self._image(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        r, c = self.pos
        reward = 1.0 + c / (CELLS - 1)  # paid for the state the step starts in
        dr, dc = [(-1, 0), (1, 0), (0, -1), (0, 1)][int(action)]
        self.pos = (min(max(r + dr, 0), CELLS - 1), min(max(c + dc, 0), CELLS - 1))
        return self._image(), reward, self.pos[1] == 0, False, {}


def _trajectories(n: int, seed: int, channels_last: bool = True) -> list[Trajectory]:
    env = SquareWorld(channels_last)
    gen = np.random.default_rng(seed)
    return [rollout(env, lambda _o: int(gen.integers(4)), seed=seed + i, max_steps=20, env_id="SquareWorld")
            for i in range(n)]


def _oracle(pairs: list[tuple[Segment, Segment]]) -> list[tuple[Segment, Segment, float]]:
    return [(a, b, 0.5 if a.ret == b.ret else float(a.ret > b.ret)) for a, b in pairs]


@pytest.fixture(scope="module")
def trained() -> tuple[RewardModel, list, list]:
    """A CNN reward model fitted to 40 oracle-labelled clip pairs, and 100 held-out labelled pairs."""
    torch.set_num_threads(1)
    trajs = _trajectories(40, seed=0)
    pairs = _oracle(candidate_pairs(trajs, 140, 8, np.random.default_rng(0)))
    train, held = pairs[:40], pairs[40:]
    model = RewardModel.for_spaces(SquareWorld().observation_space, gym.spaces.Discrete(4), seed=0, ensemble=2)
    fit_reward_model(model, train, np.random.default_rng(0), RewardTrainConfig(max_steps=100, patience=20))
    normalise_output(model, train)
    return model, train, held


def test_cnn_reward_model_ranks_held_out_pixel_clips_above_chance(trained):
    model, train, held = trained
    assert model.cfg.encoder == "cnn" and model.cfg.obs_shape == [16, 16, 3] and model.cfg.obs_dim == 0
    assert model._numpy_state().layers is None  # image models run in PyTorch
    assert sum(a.absorbing.any() or b.absorbing.any() for a, b, _ in train) >= 5  # episodes did end
    assert heldout_accuracy(model, train) > 0.9
    assert heldout_accuracy(model, held) >= 0.7


def test_pixel_absorbing_state_has_its_own_reward_and_padding_is_scored_as_absorbing(trained):
    model, train, _ = trained
    assert bool(model.anchored_to_absorbing)
    segs = [s for a, b, _ in train for s in (a, b)]
    real = np.concatenate([s.obs[~s.absorbing] for s in segs])
    r = model.reward(real, np.concatenate([s.acts[~s.absorbing] for s in segs]))
    column = np.argmax(real[..., 0].max(axis=1) > 100, axis=1) // 2  # where the square is
    # the absorbing state (anchored at 0) pays less than staying alive: on average, and almost
    # everywhere in the right half (40 labels place it only roughly among the states next to the edge)
    assert r.mean() > 0.3
    assert (r[column >= 3] > 0).mean() > 0.9
    # the absorbing state is not "a black image": its flag gives it a reward of its own
    black = np.zeros((1, 16, 16, 3), np.uint8)
    assert model.reward(black, np.zeros(1, np.int64))[0] != pytest.approx(0.0, abs=1e-4)
    traj = Trajectory(real[:4], np.array([1, 2, 3]), np.ones(3), terminated=True)
    seg = segment_at(traj, 1, 5)
    assert seg.absorbing.tolist() == [False, False, True, True, True]
    x = model.features(seg.obs, seg.acts, seg.next_obs, seg.absorbing)
    assert isinstance(x, PixelFeatures) and x.img.dtype == torch.uint8
    assert torch.all(x.img[2:] == 0) and torch.all(x.img[:2] == torch.from_numpy(seg.obs[:2].copy()))
    assert torch.all(x.vec[2:, :-1] == 0) and torch.all(x.vec[2:, -1] == 1) and torch.all(x.vec[:2, -1] == 0)
    rs = model.reward(seg.obs, seg.acts, absorbing=seg.absorbing)
    np.testing.assert_allclose(rs[2:], 0.0, atol=1e-5)  # whatever image the padding repeats
    raw = model.absorbing_raw().detach()
    assert raw.shape == (model.cfg.ensemble,)
    assert float(model.anchor) == pytest.approx(float(raw.mean()), abs=1e-6)


def test_pixel_reward_model_save_load_round_trip(trained, tmp_path):
    model, train, held = trained
    path = model.save(tmp_path / "rm")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["encoder"] == "cnn" and meta["obs_shape"] == [16, 16, 3] and meta["conv"] == model.cfg.conv
    back = RewardModel.load(path)
    seg = held[0][0]
    np.testing.assert_array_equal(back.reward(seg.obs, seg.acts, absorbing=seg.absorbing),
                                  model.reward(seg.obs, seg.acts, absorbing=seg.absorbing))
    assert torch.equal(back.absorbing_raw(), model.absorbing_raw())
    assert heldout_accuracy(back, held) == heldout_accuracy(model, held)


def test_pixel_pairs_stay_uint8_and_chunked_passes_match_the_full_batch(monkeypatch):
    torch.set_num_threads(1)
    trajs = _trajectories(6, seed=1, channels_last=False)
    pairs = _oracle(candidate_pairs(trajs, 6, 8, np.random.default_rng(1)))
    model = RewardModel.for_spaces(SquareWorld(False).observation_space, gym.spaces.Discrete(4), seed=1, ensemble=2)
    assert not model.cfg.channels_last and model.cfg.image_hw == (16, 16)
    data = make_pair_data(model, pairs)
    assert isinstance(data.x, PixelFeatures) and data.x.img.dtype == torch.uint8
    assert tuple(data.x.img.shape) == (6, 2, 8, 3, 16, 16) and tuple(data.x.vec.shape) == (6, 2, 8, 5)
    assert tuple(make_pair_data(model, []).x.img.shape) == (0, 2, 1, 3, 16, 16)
    obs = np.concatenate([a.obs for a, _, _ in pairs])
    acts = np.concatenate([a.acts for a, _, _ in pairs])
    whole = model.reward(obs, acts)
    from rlhf_gym.rewards.training import _loss_backward

    member, tc = model.members[0], RewardTrainConfig()
    member.zero_grad()
    _loss_backward(member, data, tc)
    full_grad = [p.grad.clone() for p in member.parameters()]
    monkeypatch.setattr(models, "PIXEL_CHUNK", 20)  # chunks of one pair, and of 20 images at inference
    np.testing.assert_allclose(model.reward(obs, acts), whole, atol=1e-6)
    member.zero_grad()
    _loss_backward(member, data, tc)
    for g, p in zip(full_grad, member.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-4)
    # query selection and re-initialisation work on image members too
    model.fitted.fill_(True)
    assert len(select_pairs([(a, b) for a, b, _ in pairs], 2, "disagreement", np.random.default_rng(0), model)) == 2
    before = model.reward(obs, acts)
    reinitialise(model, seed=5)
    assert np.abs(model.reward(obs, acts) - before).max() > 1e-4


def test_unsupported_observation_spaces_are_refused():
    act = gym.spaces.Discrete(2)
    with pytest.raises(ValueError, match="3-D Box"):
        RewardModel.for_spaces(gym.spaces.Box(-1, 1, (5, 4)), act)
    with pytest.raises(ValueError, match="3-D Box"):
        RewardModel.for_spaces(gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,))}), act)
    with pytest.raises(ValueError, match="3-D Box"):
        RewardModel.for_spaces(gym.spaces.Box(0, 255, (4, 16, 16, 3), np.uint8), act)
    img = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="obs_act"):
        RewardModel.for_spaces(img, act, inputs="obs_next")
    with pytest.raises(ValueError, match="images need 'cnn'"):
        RewardModel.for_spaces(img, act, encoder="mlp")
    with pytest.raises(ValueError, match="images need 'cnn'"):
        RewardModel.for_spaces(gym.spaces.Box(-1, 1, (4,)), act, encoder="cnn")
    with pytest.raises(ValueError, match="which axis"):
        RewardModel.for_spaces(gym.spaces.Box(0, 255, (16, 12, 10), np.uint8), act)
    with pytest.raises(ValueError, match="too small"):
        RewardModel.for_spaces(gym.spaces.Box(0, 255, (40, 40, 3), np.uint8), act,
                               conv=[[8, 8, 4, 0], [8, 8, 4, 0], [8, 8, 4, 0]])
    with pytest.raises(ValueError, match="encoder"):
        RewardModelConfig(obs_dim=3, act_dim=2, discrete=True, encoder="transformer")
    model = RewardModel.for_spaces(img, act)
    with pytest.raises(ValueError, match="shape"):
        model.reward(np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2, np.int64))


def test_atari_ids_name_the_extra_when_ale_py_is_missing(monkeypatch):
    import sys

    from rlhf_gym.envs import EnvError, make_env

    monkeypatch.setitem(sys.modules, "ale_py", None)  # as if ale-py were not installed
    with pytest.raises(EnvError, match=r"rlhf-gym\[atari\]"):
        make_env("ALE/Pong-v5")
