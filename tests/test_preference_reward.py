"""Reward model, Bradley-Terry training, query selection, teachers and wrappers (fast, no RL)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlhf_gym.envs import make_env
from rlhf_gym.feedback.selection import candidate_pairs, query_schedule, select_pairs
from rlhf_gym.feedback.teachers_preference import make_preference_teacher, simulated_population
from rlhf_gym.rewards.models import RewardModel, RewardModelConfig
from rlhf_gym.rewards.training import (
    binomial_cdf,
    bradley_terry_loss,
    fit_reward_model,
    normalise_output,
    preference_accuracy,
)
from rlhf_gym.rewards.wrappers import LearnedRewardVecEnv, LearnedRewardWrapper
from rlhf_gym.rollouts import random_policy, rollout, segment_at
from rlhf_gym.types import PairQuery, Segment, Trajectory


def _seg(obs: np.ndarray, rews: np.ndarray | None = None, absorbing: np.ndarray | None = None) -> Segment:
    obs = np.asarray(obs, np.float32)
    n = len(obs)
    return Segment(obs, np.zeros(n, np.int64), obs, np.zeros(n) if rews is None else rews,
                   np.zeros(n, bool) if absorbing is None else absorbing)


def test_bradley_terry_loss_and_gradient_match_the_formula():
    logits = torch.tensor([2.0, -1.0, 0.5, 0.0], requires_grad=True)
    labels = torch.tensor([1.0, 0.0, 0.5, 1.0])
    ls = 0.1
    loss = bradley_terry_loss(logits, labels, label_smoothing=ls)
    target = labels * (1 - ls) + 0.05
    p = torch.sigmoid(logits.detach())
    manual = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    loss.backward()
    assert torch.allclose(logits.grad, (p - target) / len(p), atol=1e-6)


def test_a_tie_is_best_explained_by_equal_returns():
    grid = torch.linspace(-3, 3, 61)
    losses = torch.stack([bradley_terry_loss(g.reshape(1), torch.tensor([0.5])) for g in grid])
    assert float(grid[losses.argmin()]) == pytest.approx(0.0, abs=1e-6)
    x = torch.zeros(1, requires_grad=True)
    bradley_terry_loss(x, torch.tensor([0.5])).backward()
    assert abs(float(x.grad)) < 1e-7
    assert preference_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.5])) == (0, 0)


def test_inverted_reward_check_uses_a_binomial_tail():
    assert binomial_cdf(1, 10) == pytest.approx(11 / 1024)
    assert binomial_cdf(5, 5) == pytest.approx(1.0)


def _linear_ensemble(weights: list[list[float]]) -> RewardModel:
    from rlhf_gym.rewards.models import RewardModelConfig

    m = RewardModel(RewardModelConfig(obs_dim=2, act_dim=2, discrete=True, ensemble=len(weights)))
    members = []
    for w in weights:
        lin = nn.Linear(m.cfg.in_dim, 1, bias=False)
        with torch.no_grad():
            lin.weight.zero_()
            lin.weight[0, :2] = torch.tensor(w)
        members.append(lin)
    m.members = nn.ModuleList(members)
    m.fitted.fill_(True)
    return m


def test_disagreement_selection_picks_the_pairs_the_members_dispute():
    # members agree on feature 1 but disagree about the sign of feature 0
    model = _linear_ensemble([[1.0, 1.0], [-1.0, 1.0], [1.0, 1.0]])
    z = np.zeros((5, 2))
    f0, f1 = z.copy(), z.copy()
    f0[:, 0] = 0.5
    f1[:, 1] = 0.5
    pairs = [(_seg(f1), _seg(z)), (_seg(f0), _seg(z)), (_seg(z), _seg(f1)), (_seg(z), _seg(f0))]
    rng = np.random.default_rng(0)
    assert sorted(select_pairs(pairs, 2, "disagreement", rng, model)) == [1, 3]
    # entropy prefers pairs whose mean preference is nearest 0.5: again the disputed ones
    assert sorted(select_pairs(pairs, 2, "entropy", rng, model)) == [1, 3]
    assert len(set(select_pairs(pairs, 3, "uniform", rng, model))) == 3
    with pytest.raises(ValueError, match="query selection"):
        select_pairs(pairs, 1, "bogus", rng, model)


def test_query_schedule_spends_the_budget_front_loaded():
    for budget in (1, 2, 7, 20, 50, 200):
        for kind in ("front", "fixed"):
            s = query_schedule(budget, 10, kind)
            assert sum(s) == budget and all(x >= 1 for x in s)
    s = query_schedule(40, 8, "front")
    assert s[0] > s[-1]


def _cartpole_pairs(n: int, seed: int = 0) -> list[tuple[Segment, Segment]]:
    env = make_env("CartPole-v1", seed=seed)
    trajs = [rollout(env, random_policy(env), seed=seed + i, env_id="CartPole-v1") for i in range(12)]
    env.close()
    return candidate_pairs(trajs, n, 30, np.random.default_rng(seed))


def test_oracle_prefers_surviving_clips_and_the_model_learns_the_absorbing_state(rng):
    pairs = _cartpole_pairs(60)
    teacher = make_preference_teacher("oracle", rng=rng)
    labelled = [(a, b, teacher.answer(PairQuery.make(a, b))) for a, b in pairs]
    for a, b, y in labelled:
        assert y == (0.5 if a.ret == b.ret else float(a.ret > b.ret))
    env = make_env("CartPole-v1")
    model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=0)
    m = fit_reward_model(model, labelled[:45], np.random.default_rng(0))
    assert m["train_accuracy"] > 0.9
    from rlhf_gym.rewards.diagnostics import heldout_accuracy

    assert heldout_accuracy(model, labelled[45:]) > 0.7
    normalise_output(model, labelled)
    assert bool(model.anchored_to_absorbing)
    obs = np.stack([s.obs[0] for s, _, _ in labelled])
    r = model.reward(obs, np.zeros(len(obs), np.int64))
    assert (r > 0).mean() > 0.9, "staying alive must pay more than the absorbing state (anchored at 0)"
    assert model.reward(obs[:1], np.zeros(1, np.int64), absorbing=np.ones(1, bool))[0] == pytest.approx(0, abs=1e-5)


def test_reward_model_save_load_round_trip(tmp_path):
    env = make_env("Pendulum-v1")
    model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=3, ensemble=2)
    obs = np.random.default_rng(0).normal(size=(50, 3))
    acts = np.random.default_rng(1).uniform(-2, 2, size=(50, 1))
    model.fit_input_normalisation(obs)
    model.set_output_normalisation(obs, acts, None, use_absorbing=False)
    path = model.save(tmp_path / "rm")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    back = RewardModel.load(path)
    assert np.allclose(back.reward(obs, acts), model.reward(obs, acts))
    assert abs(float(np.mean(model.reward(obs, acts)))) < 1e-4  # no absorbing seen: mean-anchored
    with pytest.raises(FileNotFoundError):
        RewardModel.load(tmp_path / "missing.safetensors")


def test_wrappers_replace_the_reward_and_keep_the_true_one_in_info():
    env = make_env("CartPole-v1")
    model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=0)
    w = LearnedRewardWrapper(env, model)
    obs, _ = w.reset(seed=0)
    nxt, r, *_rest, info = w.step(1)
    assert info["true_reward"] == 1.0
    assert r == pytest.approx(float(model.reward(obs[None], np.array([1]), nxt[None])[0]))
    assert r != 1.0
    from stable_baselines3.common.env_util import make_vec_env

    venv = LearnedRewardVecEnv(make_vec_env("CartPole-v1", n_envs=2, seed=0), model)
    o = venv.reset()
    acts = np.array([0, 1])
    o2, rews, dones, infos = venv.step(acts)
    assert [i["true_reward"] for i in infos] == [1.0, 1.0]
    assert np.allclose(rews, model.reward(o, acts, o2))
    venv.close()


def test_teachers_noise_and_biases(rng):
    pairs = _cartpole_pairs(200, seed=1)
    qs = [PairQuery.make(a, b) for a, b in pairs]
    oracle = make_preference_teacher("oracle", rng=np.random.default_rng(0))
    truth = np.array([oracle.answer(q) for q in qs], dtype=float)
    decided = truth != 0.5
    mistake = make_preference_teacher("mistake", rng=np.random.default_rng(0), epsilon=0.3)
    wrong = np.mean([mistake.answer(q) != t for q, t in zip(qs, truth, strict=True)][: len(qs)])
    assert 0.15 < wrong < 0.45
    left = make_preference_teacher("always-left", rng=np.random.default_rng(0))
    assert all(left.answer(q) == 1.0 for q in qs)
    skip = make_preference_teacher("skip", rng=np.random.default_rng(0), skip=0.5)
    assert any(skip.answer(q) is None for q in qs)
    equal = make_preference_teacher("equal", rng=np.random.default_rng(0), equal=0.5)
    assert np.mean([equal.answer(q) == 0.5 for q in qs]) > np.mean(~decided)
    stoch = make_preference_teacher("stochastic", rng=np.random.default_rng(0), beta=1000.0)
    agree = np.mean([stoch.answer(q) == t for q, t in zip(qs, truth, strict=True) if t != 0.5])
    assert agree > 0.9
    rand = make_preference_teacher("random", rng=np.random.default_rng(0))
    assert 0.3 < np.mean([rand.answer(q) for q in qs]) < 0.7
    combo = make_preference_teacher("mistake+skip", rng=np.random.default_rng(0))
    assert combo.params.epsilon == 0.1 and combo.params.skip == 0.1
    with pytest.raises(ValueError, match="unknown preference teacher"):
        make_preference_teacher("psychic")


def test_population_has_distinct_registered_annotators(store, rng):
    pop = simulated_population(8, rng, store=store)
    ids = [t.annotator_id for t in pop]
    assert len(set(ids)) == 8
    assert {a.id for a in store.annotators()} >= set(ids)
    assert any(t.params.position_bias == 1.0 for t in pop)


def test_teacher_answers_through_the_store(store, rng):
    teacher = make_preference_teacher("oracle", "t1", rng, store=store, run_id="r1")
    pairs = _cartpole_pairs(3)
    fbs = teacher.ask([PairQuery.make(a, b, run_id="r1") for a, b in pairs])
    assert len(fbs) == 3 and all(f.id is not None for f in fbs)
    assert len(store.labelled_pairs("r1")) == sum(f.value is not None for f in fbs)


def test_segment_padding_feeds_the_absorbing_flag_not_the_state():
    traj = Trajectory(np.arange(8, dtype=np.float32).reshape(4, 2), np.array([0, 1, 0]), np.ones(3), terminated=True)
    seg = segment_at(traj, 1, 5)
    assert seg.absorbing.tolist() == [False, False, True, True, True]
    model = RewardModel.for_spaces(gym.spaces.Box(-10, 10, (2,)), gym.spaces.Discrete(2))
    x = model.features(seg.obs, seg.acts, seg.next_obs, seg.absorbing)
    assert torch.all(x[2:, :-1] == 0) and torch.all(x[2:, -1] == 1) and torch.all(x[:2, -1] == 0)


def test_weighted_bradley_terry_loss_ignores_zero_weight_pairs():
    logits = torch.tensor([2.0, -1.0, 0.3])
    labels = torch.tensor([1.0, 1.0, 0.0])
    w = torch.tensor([1.0, 0.0, 1.0])
    weighted = bradley_terry_loss(logits, labels, weights=w)
    kept = bradley_terry_loss(logits[[0, 2]], labels[[0, 2]])
    assert torch.allclose(weighted, kept)
    assert torch.allclose(bradley_terry_loss(logits, labels, weights=torch.ones(3)), bradley_terry_loss(logits, labels))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("inputs", ["obs_act", "obs_next"])
def test_numpy_inference_matches_the_torch_network_and_follows_training(env_id, inputs):
    """``reward`` runs in numpy on a cached copy of the weights; an optimiser step must refresh it."""
    env = gym.make(env_id)
    model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=3, inputs=inputs)
    gen = np.random.default_rng(0)
    obs = gen.normal(size=(40, env.observation_space.shape[0])).astype(np.float32)
    model.fit_input_normalisation(obs)
    acts = np.array([env.action_space.sample() for _ in range(40)])
    nxt, ab = obs + 0.1, gen.random(40) < 0.25
    model.anchor.fill_(0.2)
    model.scale.fill_(1.5)

    def torch_path() -> np.ndarray:
        with torch.no_grad():
            raw = model.member_rewards(model.features(obs, acts, nxt, ab)).mean(0)
            return ((raw - model.anchor) / model.scale).numpy()

    np.testing.assert_allclose(model.reward(obs, acts, nxt, ab), torch_path(), atol=1e-5)
    before = model.reward(obs, acts, nxt, ab)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.member_rewards(model.features(obs, acts, nxt, ab)).sum().backward()
    opt.step()
    after = model.reward(obs, acts, nxt, ab)
    assert np.abs(after - before).max() > 1e-3  # the cache was not stale
    np.testing.assert_allclose(after, torch_path(), atol=1e-5)


def _corridor_pairs(n: int, step_reward: float, seed: int) -> list[tuple[Segment, Segment, float]]:
    """Oracle-labelled clips of a 1-D walk that terminates at x >= 1 (every step pays ``step_reward``).

    With -1 per step (MountainCar's shape) reaching the end is good; with +1 (CartPole's) it is bad.
    """
    gen = np.random.default_rng(seed)
    trajs = []
    for k in range(2 * n):
        length = int(gen.integers(5, 80))
        x = np.linspace(gen.uniform(-1, 0), 1.0 if length < 50 else 0.5, length + 1)[:, None]
        trajs.append(Trajectory(x.astype(np.float32), np.zeros(length, np.int64), np.full(length, step_reward),
                                terminated=length < 50, truncated=length >= 50, seed=k))
    teacher = make_preference_teacher("oracle", rng=gen)
    segs = [segment_at(t, 0, 30) for t in trajs if len(t) >= 30 or t.terminated]
    pairs = [(segs[i], segs[i + 1]) for i in range(0, len(segs) - 1, 2)]
    return [(a, b, teacher.answer(PairQuery.make(a, b))) for a, b in pairs]


@pytest.mark.parametrize(("step_reward", "sign"), [(-1.0, -1), (1.0, 1)])
def test_termination_bias_is_learned_in_both_directions(step_reward, sign):
    """Anchoring at the learned absorbing reward: ending early pays where the teacher prefers it (a goal)
    and costs where it does not (falling over) -- with the same code and defaults."""
    labelled = _corridor_pairs(40, step_reward, seed=1)
    assert sum(y != 0.5 for _, _, y in labelled) >= 10  # enough decided pairs to learn from
    model = RewardModel(RewardModelConfig(obs_dim=1, act_dim=1, discrete=True), seed=0)
    fit_reward_model(model, labelled, np.random.default_rng(0))
    normalise_output(model, labelled)
    assert bool(model.anchored_to_absorbing)
    x = np.linspace(-1, 0.9, 50)[:, None]
    r = model.reward(x, np.zeros(50, np.int64))
    assert (np.sign(r) == sign).mean() > 0.8, f"most states should pay {'more' if sign > 0 else 'less'} than ending"


def test_all_tie_labels_are_reported_not_learned_silently():
    a, b = _seg(np.zeros((5, 4))), _seg(np.ones((5, 4)))
    env = make_env("CartPole-v1")
    model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=0)
    m = fit_reward_model(model, [(a, b, 0.5)] * 8, np.random.default_rng(0))
    assert m["warning"] and "tie" in m["warning"]


def test_state_entropy_reward_pays_more_for_new_states():
    from rlhf_gym.rewards.exploration import StateEntropyReward

    ent = StateEntropyReward(obs_dim=2, k=3, capacity=500)
    gen = np.random.default_rng(0)
    for _ in range(50):
        ent(gen.normal(0, 0.1, size=(8, 2)))  # a cluster around the origin
    r = ent(np.array([[0.0, 0.0], [3.0, -3.0]]))
    assert r[1] > 3 * r[0] > 0
    with pytest.raises(ValueError, match="k"):
        StateEntropyReward(obs_dim=2, k=0)


def test_relabel_replay_buffer_writes_the_models_reward_into_sacs_buffer():
    from stable_baselines3 import SAC

    from rlhf_gym.envs import make_env
    from rlhf_gym.rewards.models import RewardModel
    from rlhf_gym.rewards.wrappers import relabel_replay_buffer

    env = make_env("Pendulum-v1")
    algo = SAC("MlpPolicy", env, learning_starts=1000, seed=0, device="cpu")
    algo.learn(120)  # random actions only: fills the buffer
    buf = algo.replay_buffer
    model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=1)
    before = buf.rewards[: buf.pos].copy()
    assert relabel_replay_buffer(algo, model) == buf.pos
    acts = algo.policy.unscale_action(buf.actions[: buf.pos].reshape(buf.pos, -1))
    want = model.reward(buf.observations[: buf.pos, 0], acts, buf.next_observations[: buf.pos, 0])
    assert np.allclose(buf.rewards[: buf.pos, 0], want, atol=1e-5)
    assert not np.allclose(before, buf.rewards[: buf.pos])
    env.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("inputs", ["obs_act", "obs_next", "obs"])
def test_renormalise_inputs_keeps_the_function_and_widens_the_statistics(env_id, inputs):
    """New input statistics, same rewards on the old (unclipped) range and on the absorbing state."""
    env = gym.make(env_id)
    model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=1, inputs=inputs)
    gen = np.random.default_rng(0)
    d = env.observation_space.shape[0]
    model.fit_input_normalisation(gen.normal(0.0, 0.1, size=(200, d)))
    model.anchor.fill_(0.3)
    model.scale.fill_(0.7)
    obs = gen.normal(0.0, 0.2, size=(60, d)).astype(np.float32)
    acts = np.array([env.action_space.sample() for _ in range(60)])
    nxt, ab = obs + 0.01, np.arange(60) < 6
    before = model.reward(obs, acts, nxt, ab)
    wide = gen.normal(1.0, 3.0, size=(500, d))
    model.renormalise_inputs(wide)
    np.testing.assert_allclose(model.reward(obs, acts, nxt, ab), before, atol=1e-5)
    np.testing.assert_allclose(model.obs_mean.numpy(), wide.mean(0), atol=1e-5)
    np.testing.assert_allclose(model.obs_std.numpy(), wide.std(0), rtol=1e-5)


def test_flatness_penalty_pays_unlabelled_states_alike_and_keeps_the_labels_order():
    """With few labels, the network's extrapolation decides what unlabelled states pay (a CartPole cart far
    off-centre was paid more than a centred one). ``RewardTrainConfig.flat`` prefers, among rewards that
    order the labelled clips, the one that varies least over the states the policy visits."""
    from rlhf_gym.rewards.training import RewardTrainConfig

    teacher = make_preference_teacher("oracle", rng=np.random.default_rng(0))
    labelled = [(a, b, teacher.answer(PairQuery.make(a, b))) for a, b in _cartpole_pairs(12)]
    x = np.linspace(-2.4, 2.4, 97, dtype=np.float32)
    grid = np.zeros((len(x), 4), np.float32)
    grid[:, 0] = x  # carts all along the track, upright and at rest: no label compared these
    visited = [Trajectory(grid, np.zeros(len(x) - 1, np.int64), np.zeros(len(x) - 1))]
    env = make_env("CartPole-v1")
    spread, acc = {}, {}
    for flat in (0.0, 1.0):
        model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=0)
        m = fit_reward_model(model, labelled, np.random.default_rng(0), RewardTrainConfig(flat=flat),
                             unlabelled=visited)
        with torch.no_grad():
            raw = model.member_rewards(model.features(grid, np.zeros(len(x), np.int64), grid,
                                                      np.zeros(len(x), bool))).numpy()
        spread[flat], acc[flat] = float(raw.std(axis=1).mean()), m["train_accuracy"]
    assert acc[1.0] >= 0.9 and acc[0.0] >= 0.9, acc  # the labels are still explained
    assert spread[1.0] < 0.5 * spread[0.0], spread
