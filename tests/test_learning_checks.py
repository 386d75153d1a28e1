"""Learning checks that fail when the learning breaks: each evaluative learner solves CartPole, replay
matters, a 20%-wrong teacher still teaches, and ``rlhf-gym evaluate`` reports what the saved policy does.

Budgets and seeds are fixed (CI); each check was seen to fail with the code it guards broken (feedback
ignored, replay off, evaluate returning a constant): see the README, "Learning checks in CI".
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhf_gym.cli import main
from rlhf_gym.config import TrainConfig
from rlhf_gym.envs import make_env
from rlhf_gym.feedback.teachers_evaluative import ExpertActionJudge, SimulatedTeacher
from rlhf_gym.learners.common import LearnerSettings
from rlhf_gym.learners.evaluative_loop import learner_class, make_learner, teach
from rlhf_gym.pipeline import train
from rlhf_gym.rollouts import evaluate_policy, random_policy


def cartpole_expert(obs: np.ndarray) -> int:
    return int(3 * obs[2] + obs[3] > 0)


def teach_cartpole(learner: str, budget: int, seed: int, noise: float = 0.0, replay: bool = True,
                   **settings: object) -> float:
    """Mean greedy return (10 episodes) after ``budget`` answers from an expert-action teacher, the learner at
    its own defaults but for ``replay`` and ``settings``."""
    rng = np.random.default_rng(seed)
    src = SimulatedTeacher(ExpertActionJudge(cartpole_expert), "t", rng=np.random.default_rng(seed + 1), noise=noise)
    agent = make_learner(learner, 4, 2, rng, LearnerSettings.for_learner(learner_class(learner),
                                                                          {"replay": replay, **settings}))
    stats = teach(make_env("CartPole-v1", seed=seed), agent, src, budget, seed=seed)
    assert stats.used == budget
    agent.model.set_scaler(agent.scaler)
    return float(evaluate_policy("CartPole-v1", agent.model.greedy, 10, seed=10_000, batched=True).mean())


@pytest.fixture(scope="module")
def random_return() -> float:
    env = make_env("CartPole-v1", seed=0)
    return float(evaluate_policy(env, random_policy(env), 10, seed=10_000).mean())


@pytest.mark.parametrize("learner, budget, seeds", [("tamer", 150, (0, 1, 2)), ("coach", 300, (0, 1)),
                                                    ("reinforce", 200, (0, 1))])
def test_each_evaluative_learner_solves_cartpole(learner, budget, seeds):
    rets = [teach_cartpole(learner, budget, s) for s in seeds]
    assert min(rets) >= 475, (learner, rets)  # CartPole-v1's own threshold, on every seed


def test_replay_matters_for_an_evaluative_learner():
    """Without replay (updates on the newest answer alone) COACH forgets: same answers, same seeds, worse.

    Run without the question placement and weight decay that are the defaults since 2026-12-08: with them,
    a few hundred answers are too few for replay to show (COACH at 200 answers: 500, 427.8, 500 with replay,
    498.1, 500, 398.8 without; TAMER at 150: 500, 500, 500 and 489.6, 500, 500); over the 1,000 answers of
    the benchmark's stay check it does (README, "Evaluative benchmark")."""
    seeds, old = (0, 1), {"ask_novelty": False, "weight_decay": 0.0}
    with_replay = [teach_cartpole("coach", 200, s, **old) for s in seeds]
    without = [teach_cartpole("coach", 200, s, replay=False, **old) for s in seeds]
    assert min(with_replay) >= 475, with_replay
    assert np.mean(without) < 0.8 * np.mean(with_replay), (with_replay, without)


def test_a_teacher_wrong_one_time_in_five_still_teaches(random_return):
    rets = [teach_cartpole("tamer", 200, s, noise=0.2) for s in (0, 1, 2)]
    assert np.mean(rets) > max(300.0, 10 * random_return), rets


def hand_rolled_returns(env_id: str, act, episodes: int, seed: int) -> list[float]:
    """Returns of ``act`` on episodes seeded ``seed, seed + 1, ...``, stepped here with Gymnasium alone."""
    env = gym.make(env_id)
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs))
            total += float(r)
            done = term or trunc
        out.append(total)
    env.close()
    return out


def evaluate_cli(run_dir, episodes: int, seed: int, capsys) -> dict:
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", str(episodes), "--seed", str(seed), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_reports_the_saved_evaluative_policy(tmp_path, capsys):
    out = tmp_path / "run"
    res = train(TrainConfig(env="CartPole-v1", feedback="evaluative", learner="tamer", budget=15, seed=0,
                            out=str(out), progress=False, eval_episodes=3))
    from rlhf_gym.learners.common import load_mlp

    model, _ = load_mlp(out / "policy.safetensors")  # the saved weights file, stepped by hand below

    def act(obs):
        with torch.no_grad():
            return int(np.argmax(model.outputs(np.asarray(obs, dtype=np.float32))))

    want = hand_rolled_returns("CartPole-v1", act, 4, seed=321)
    got = evaluate_cli(out, 4, 321, capsys)
    assert got["mean_return"] == pytest.approx(np.mean(want)) and got["std_return"] == pytest.approx(np.std(want))
    assert got["min_return"] == min(want) and got["max_return"] == max(want) and got["episodes"] == 4
    # the training job's own final evaluation (seeds 10000...) is what evaluate reports for the same seeds
    assert evaluate_cli(out, 3, 10_000, capsys)["mean_return"] == pytest.approx(res["mean_return"])
    other = evaluate_cli(out, 4, 999, capsys)
    assert other["mean_return"] == pytest.approx(np.mean(hand_rolled_returns("CartPole-v1", act, 4, seed=999)))


def test_evaluate_reports_the_saved_sb3_policy(tmp_path, capsys):
    from stable_baselines3 import PPO

    out = tmp_path / "pref"
    res = train(TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=4, seed=0,
                            out=str(out), timesteps=2048, progress=False, eval_episodes=3))
    algo = PPO.load(str(out / "policy.zip"), device="cpu")
    want = hand_rolled_returns("CartPole-v1", lambda o: int(algo.predict(o, deterministic=True)[0]), 3, seed=77)
    got = evaluate_cli(out, 3, 77, capsys)
    assert got["mean_return"] == pytest.approx(np.mean(want)) and got["min_return"] == min(want)
    assert evaluate_cli(out, 3, 10_000, capsys)["mean_return"] == pytest.approx(res["mean_return"])


def test_preference_loop_solves_cartpole(tmp_path):
    """20 oracle labels, 50k PPO steps (a CI budget: the default is 100k), seed 0: solved, on the true reward.

    Before issue 13's defaults seed 1 reached about 180 at this budget; the benchmark's 5-seed rows use
    the default steps. A held-out set is asked for (by default it starts at 100 labels): the 4 held-out
    labels are really held out (16 trained), and the model ranks the decisive ones (ties, equal clip
    returns, are not counted: 2 of the 4 at this seed); prequential accuracy is reported too."""
    res = train(TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=20, seed=0,
                            out=str(tmp_path / "run"), timesteps=50_000, progress=False, eval_episodes=10,
                            extra={"eval_points": 2, "heldout_min_budget": 20}))
    assert res["mean_return"] >= 475, res["mean_return"]
    assert res["labels_trained"] == 16 and 1 <= res["heldout_pairs"] <= 4 and res["heldout_accuracy"] >= 0.5
    assert res["prequential_pairs"] > 0 and 0.0 <= res["prequential_accuracy"] <= 1.0


def test_continuous_actions_pendulum_reward_is_learned_from_20_labels():
    """Continuous actions (Pendulum-v1): 20 oracle labels on random-policy clips give a reward that tracks
    the true per-step reward on fresh episodes (2 sets of clips x 3 model seeds); 20 coin-flip labels do not. Per-step, not
    per-clip: on random Pendulum clips one feature dominates the clip return, so even an untrained or a
    coin-flip model gets a large (signed) clip correlation. (No RL here: SAC on Pendulum needs ~20k steps,
    minutes on CI's 2 cores; the benchmark runs it.)"""
    from rlhf_gym.feedback.selection import candidate_pairs
    from rlhf_gym.feedback.teachers_preference import make_preference_teacher
    from rlhf_gym.rewards.diagnostics import reward_correlation
    from rlhf_gym.rewards.models import RewardModel
    from rlhf_gym.rewards.training import fit_reward_model
    from rlhf_gym.rollouts import rollout
    from rlhf_gym.types import PairQuery

    torch.manual_seed(0)
    corr: dict[str, list[float]] = {}
    for env_seed in (0, 1):  # the random policy's actions seeded too: the same clips on every run
        env = make_env("Pendulum-v1", seed=env_seed)
        pol = random_policy(env)
        train_trajs = [rollout(env, pol, seed=10 * env_seed + s) for s in range(8)]
        test_trajs = [rollout(env, pol, seed=100 + s) for s in range(6)]
        pairs = candidate_pairs(train_trajs, 20, 50, np.random.default_rng(env_seed))
        for name in ("oracle", "random"):
            teacher = make_preference_teacher(name, rng=np.random.default_rng(1))
            labelled = [(a, b, teacher.answer(PairQuery.make(a, b))) for a, b in pairs]
            for seed in (0, 1, 2):
                model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=seed)
                fit_reward_model(model, labelled, np.random.default_rng(seed))
                corr.setdefault(name, []).append(reward_correlation(model, test_trajs)["corr_step"])
        env.close()
    # (over 5 configurations of clips tried: oracle means 0.48-0.80, coin-flip means -0.04-0.14)
    assert np.mean(corr["oracle"]) > 0.35 and min(corr["oracle"]) > 0.2, corr
    assert np.mean(corr["random"]) < 0.2 and np.mean(corr["oracle"]) > np.mean(corr["random"]) + 0.25, corr
