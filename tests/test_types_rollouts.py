import numpy as np
import pytest

from rlhf_gym.envs import EnvError, make_env, require_discrete
from rlhf_gym.rollouts import cut_segments, random_policy, rollout, segment_at
from rlhf_gym.types import Feedback, PairQuery, Query, Segment, StepQuery, Trajectory


def test_trajectory_validates_lengths():
    with pytest.raises(ValueError, match="len\\(obs\\) == len\\(acts\\) \\+ 1"):
        Trajectory(np.zeros((3, 2)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="both terminated and truncated"):
        Trajectory(np.zeros((2, 2)), np.zeros(1), np.zeros(1), terminated=True, truncated=True)


def test_rollout_keeps_terminated_and_truncated_apart():
    env = make_env("CartPole-v1")
    t = rollout(env, random_policy(env), seed=0)
    assert t.terminated and not t.truncated
    assert len(t.obs) == len(t.acts) + 1
    t2 = rollout(env, random_policy(env), seed=0, max_steps=5)
    assert t2.truncated and not t2.terminated and len(t2) == 5
    # same seed, same episode
    assert np.array_equal(rollout(env, lambda o: 0, seed=3).obs, rollout(env, lambda o: 0, seed=3).obs)


def test_segments_pad_terminated_episode_with_absorbing_state():
    env = make_env("CartPole-v1")
    t = rollout(env, lambda o: 0, seed=1)  # always pushing left falls within ~10 steps
    n = len(t)
    seg = segment_at(t, n - 3, 10)
    assert len(seg) == 10
    assert seg.absorbing.tolist() == [False] * 3 + [True] * 7
    assert seg.rews[3:].sum() == 0 and seg.rews[:3].sum() == 3
    np.testing.assert_allclose(seg.obs[5], t.obs[n])
    # a truncated trajectory is never padded
    tr = rollout(env, random_policy(env), seed=0, max_steps=7)
    assert all(not s.absorbing.any() for s in cut_segments(tr, 3))
    with pytest.raises(ValueError):
        segment_at(tr, 5, 5)


def test_query_and_feedback_round_trip_through_dicts():
    seg = Segment(np.zeros((2, 4)), np.array([0, 1]), np.ones((2, 4)), np.array([1.0, 0.0]), np.array([False, True]))
    pq = PairQuery.make(seg, seg, run_id="r")
    back = Query.from_dict(pq.to_dict())
    assert isinstance(back, PairQuery) and back.id == pq.id
    np.testing.assert_array_equal(back.left.absorbing, seg.absorbing)
    sq = StepQuery.make(np.arange(4.0), 1, step=7, episode=2)
    assert Query.from_dict(sq.to_dict()).step == 7
    fb = Feedback("q-1", "a", 1, 1.0, 2.0, step=4)
    assert Feedback.from_dict(fb.to_dict()) == fb
    with pytest.raises(ValueError, match="finite"):
        Feedback("q", "a", float("nan"), 0, 1)
    with pytest.raises(ValueError, match="unknown query kind"):
        Query.from_dict({"kind": "poem", "id": "x", "created_at": 0, "payload": {}})


def test_env_errors_name_the_problem():
    with pytest.raises(EnvError, match="NoSuchEnv-v0"):
        make_env("NoSuchEnv-v0")
    with pytest.raises(EnvError, match="continuous"):
        require_discrete("Pendulum-v1", "tamer")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_batched_rollouts_equal_one_by_one_rollouts(env_id):
    from rlhf_gym.rollouts import rollout_batch

    envs = [make_env(env_id) for _ in range(3)]
    discrete = env_id == "CartPole-v1"

    def batch_policy(obs):  # deterministic, so both ways must give the same episodes
        return (obs[:, 2] > 0).astype(int) if discrete else np.clip(obs[:, :1] * 2, -2, 2)

    def single(o):
        a = batch_policy(np.asarray(o)[None])[0]
        return int(a) if discrete else a

    batched = rollout_batch(envs, batch_policy, [5, 6, 7])
    for seed, traj in zip([5, 6, 7], batched, strict=True):
        ref = rollout(make_env(env_id), single, seed=seed)
        assert len(traj) == len(ref) and traj.terminated == ref.terminated and traj.truncated == ref.truncated
        np.testing.assert_allclose(traj.obs, ref.obs)
        np.testing.assert_allclose(traj.rews, ref.rews)
        assert traj.seed == seed
    with pytest.raises(ValueError, match="seeds"):
        rollout_batch(envs[:1], batch_policy, [1, 2])


def test_a_missing_box2d_names_the_extra(monkeypatch):
    import gymnasium as gym

    def no_box2d(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("Box2D is not installed, run `pip install swig` ...")

    monkeypatch.setattr(gym, "make", no_box2d)
    with pytest.raises(EnvError, match=r"rlhf-gym\[box2d\]"):
        make_env("LunarLander-v3")


def test_evaluate_policy_gives_the_same_returns_however_the_envs_are_given():
    """One env, several in lockstep, or an id: the same seeds give the same returns (one evaluation function)."""
    from rlhf_gym.envs import make_env
    from rlhf_gym.rollouts import evaluate_policy, rollout

    def pol(o):
        return int(o[2] > 0)

    one = make_env("CartPole-v1")
    by_hand = np.array([rollout(one, pol, seed=500 + i).ret for i in range(5)])
    assert np.array_equal(evaluate_policy(one, pol, 5, seed=500), by_hand)
    several = [make_env("CartPole-v1") for _ in range(2)]
    assert np.array_equal(evaluate_policy(several, lambda obs: [pol(o) for o in obs], 5, seed=500, batched=True),
                          by_hand)
    assert np.array_equal(evaluate_policy("CartPole-v1", pol, 5, seed=500), by_hand)
    assert by_hand.std() > 0  # the seeds matter, so equal arrays mean equal episodes
