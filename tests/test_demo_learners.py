"""Learners from demonstrations: BC (discrete and continuous), DAgger's label budget, maximum-entropy IRL,
and the demonstration run job end to end (evaluate loads its policy, withdrawal flags it, bad input exits 2)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhf_gym.cli import main
from rlhf_gym.demos.data import record_demos, trajectory_from_record, write_jsonl
from rlhf_gym.envs import make_env
from rlhf_gym.feedback.teachers_demonstration import PolicyDemonstrator
from rlhf_gym.learners.bc import BCSettings, train_bc
from rlhf_gym.learners.dagger import dagger
from rlhf_gym.learners.maxent_irl import TablePolicy, maxent_irl, optimal_policy, tabular_mdp
from rlhf_gym.rollouts import evaluate_policy, rollout
from rlhf_gym.store import FeedbackStore


def cartpole_expert(obs: np.ndarray) -> int:
    return int(3 * obs[2] + obs[3] > 0)


def mountaincar_pump(obs: np.ndarray) -> np.ndarray:
    """Push the way the car moves (pumps energy in; reaches the flag in ~100-150 steps)."""
    return np.array([1.0 if obs[1] >= 0 else -1.0], np.float32)


def demos(policy, env_id: str, n: int, epsilon: float = 0.0, seed: int = 0, max_steps: int | None = None):
    src = PolicyDemonstrator(policy, "t", rng=np.random.default_rng(seed), epsilon=epsilon)
    return [trajectory_from_record(fb.data) for fb in record_demos(src, env_id, n, seed=seed, max_steps=max_steps)]


def stack(trajs):
    return (np.concatenate([t.obs[:-1] for t in trajs]), np.concatenate([t.acts for t in trajs]),
            np.concatenate([np.full(len(t), i) for i, t in enumerate(trajs)]))


FAST = BCSettings(max_epochs=60, patience=8)


def bc_return(trajs, env_id="CartPole-v1", episodes=10, **kw):
    obs, acts, groups = stack(trajs)
    fit = train_bc(obs, acts, groups=groups, seed=0, settings=FAST, **kw)
    env = make_env(env_id)
    return float(evaluate_policy(env, fit.policy(), episodes, seed=10_000).mean()), fit


def test_bc_learns_cartpole_from_expert_demos_and_not_from_random_ones():
    expert, fit = bc_return(demos(cartpole_expert, "CartPole-v1", 5), discrete=True, n_actions=2)
    control, _ = bc_return(demos(None, "CartPole-v1", 5, epsilon=1.0), discrete=True, n_actions=2)
    assert expert >= 475, expert
    assert control < 100, control
    assert len(fit.val_loss) == fit.epochs and fit.best_epoch >= 1  # validation tracked, best kept


def test_bc_early_stopping_keeps_the_best_validation_epoch():
    trajs = demos(None, "CartPole-v1", 6, epsilon=1.0)  # random labels: validation loss cannot keep falling
    obs, acts, groups = stack(trajs)
    fit = train_bc(obs, acts, groups=groups, discrete=True, n_actions=2, settings=BCSettings(max_epochs=300, patience=5))
    assert fit.epochs < 300 and fit.epochs - fit.best_epoch == 5


def test_bc_continuous_actions_mountaincar():
    trajs = demos(mountaincar_pump, "MountainCarContinuous-v0", 3)
    assert min(t.ret for t in trajs) > 50  # the demonstrator reaches the flag
    env = make_env("MountainCarContinuous-v0")
    lo, hi = env.action_space.low, env.action_space.high
    ret, _ = bc_return(trajs, "MountainCarContinuous-v0", episodes=5, discrete=False, act_low=lo, act_high=hi)
    control, _ = bc_return(demos(None, "MountainCarContinuous-v0", 3, epsilon=1.0), "MountainCarContinuous-v0",
                           episodes=5, discrete=False, act_low=lo, act_high=hi)
    assert ret > 50, ret
    assert control < 0, control


def test_dagger_spends_exactly_its_label_budget(store):
    store.add_annotator("sim-expert")
    src = PolicyDemonstrator(cartpole_expert, "sim-expert", store, run_id="r")
    res = dagger(make_env("CartPole-v1", seed=0), src, 200, discrete=True, n_actions=2, rounds=5, seed=0,
                 env_id="CartPole-v1", run_id="r", settings=FAST)
    assert res.labels_asked == 200 and res.labels_used == 200 and res.env_steps >= 200
    assert len(store.feedback(kind="action")) == 200 and len(res.feedback_ids) == 200
    assert evaluate_policy(make_env("CartPole-v1"), res.bc.policy(), 5, seed=10_000).mean() >= 475


def test_dagger_asks_about_late_states_of_the_learners_episodes(store):
    """From the second round the learner drives whole episodes and labels are drawn over them, so a policy
    that fails late is labelled where it fails (labelling every visited state from the start would spend
    200 labels on the first 200 steps)."""

    class Recorder(PolicyDemonstrator):
        asked: list = []

        def _submit(self, queries):
            self.asked.extend(queries)
            super()._submit(queries)

    store.add_annotator("sim-rec")
    src = Recorder(cartpole_expert, "sim-rec", store)
    res = dagger(make_env("CartPole-v1", seed=0), src, 200, discrete=True, n_actions=2, rounds=5, seed=0,
                 env_id="CartPole-v1", settings=FAST)
    depth = [len(q.actions) for q in src.asked]
    assert depth[:40] == list(range(40))  # round 1: the teacher drives one episode, asked at every step
    assert max(depth[40:]) > 250 and res.env_steps > 400  # later rounds: states deep into long episodes
    assert len({q.episode for q in src.asked}) >= 3


def test_dagger_budget_counts_skipped_labels_too(store):
    class Skipper(PolicyDemonstrator):
        """Skips every second question (the answer is stored as skipped)."""

        n = 0

        def _collect(self, step):
            out = []
            for f in super()._collect(step):
                self.n += 1
                out.append(self._record(self._pending[f.query_id], None) if self.n % 2 else f)
            return out

    store.add_annotator("sim-half")
    res = dagger(make_env("CartPole-v1", seed=0), Skipper(cartpole_expert, "sim-half", store), 40, discrete=True,
                 n_actions=2, rounds=1, seed=0, env_id="CartPole-v1", settings=FAST)
    assert res.labels_asked == 40 and res.labels_used == 20
    assert len(store.feedback(kind="action", include_skipped=False)) == 20


def test_maxent_irl_recovers_a_reward_that_solves_deterministic_frozenlake():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    mdp = tabular_mdp(env)
    expert = optimal_policy(mdp)
    trajs = [rollout(env, lambda o: int(expert[int(o)]), seed=i) for i in range(5)]
    res = maxent_irl(mdp, [(t.obs.astype(int), t.acts) for t in trajs], iters=100)
    assert evaluate_policy(env, TablePolicy(res.policy), 5).mean() == 1.0
    assert res.history[-1] < 0.1 * res.history[0]  # the visitation gap closed
    # the control: the same planner on a reward that ignores the demonstrations never reaches the goal
    assert evaluate_policy(env, TablePolicy(optimal_policy(mdp, np.zeros(mdp.n_states))), 5).mean() == 0.0
    on_path = {int(s) for s in trajs[0].obs}
    assert res.reward[list(on_path)].mean() > np.delete(res.reward, list(on_path)).mean()


def test_maxent_irl_on_a_hand_made_3x3_grid():
    """3x3 grid, start 0 (top left), goal 8 (bottom right) ends the episode; moves right/down/left/up."""
    from rlhf_gym.learners.maxent_irl import TabularMDP

    T = np.zeros((9, 4, 9))
    done = np.zeros((9, 4, 9), bool)
    for s in range(9):
        r, c = divmod(s, 3)
        for a, (dr, dc) in enumerate(((0, 1), (1, 0), (0, -1), (-1, 0))):
            s2 = min(max(r + dr, 0), 2) * 3 + min(max(c + dc, 0), 2)
            T[s, a, s2] = 1.0
            done[s, a, s2] = s2 == 8
    mdp = TabularMDP(T, done, np.zeros_like(T))
    path = [0, 1, 2, 5, 8]  # along the top row, then down the right column
    res = maxent_irl(mdp, [(path, [0, 0, 1, 1])] * 3, iters=150)
    r = res.reward
    assert r[8] > r[[3, 4, 6, 7]].max()  # the goal beats every state off the path
    assert min(r[1], r[2], r[5]) > max(r[3], r[6], r[7])  # the shown path beats the untaken row/column
    assert evaluate_policy_table(mdp, res.policy, 0) == path


def evaluate_policy_table(mdp, policy, s):
    states = [s]
    for _ in range(10):
        s = int(np.argmax(mdp.T[s, policy[s]]))
        states.append(s)
        if mdp.done[states[-2], policy[states[-2]], s]:
            break
    return states


# -- the job through the CLI ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """A store with 4 analytic-expert CartPole demonstrations (as `demos record` writes it)."""
    folder = tmp_path_factory.mktemp("demos")
    store = FeedbackStore(folder / "feedback.db")
    store.add_annotator("sim-expert")
    src = PolicyDemonstrator(cartpole_expert, "sim-expert", store, run_id="demos")
    fbs = record_demos(src, "CartPole-v1", 4, seed=0, run_id="demos")
    write_jsonl([trajectory_from_record(fb.data) for fb in fbs], folder / "demos.jsonl")
    store.close()
    return folder


def test_train_bc_from_a_store_then_evaluate_and_withdraw(tmp_path, demo_store, capsys):
    out = tmp_path / "run"
    db = demo_store / "feedback.db"
    rc = main(["train", "--env", "CartPole-v1", "--feedback", "demonstration", "--demos", str(demo_store), "--db",
               str(db), "--out", str(out), "--eval-episodes", "3", "--no-progress", "--set", "bc_max_epochs=40"])
    assert rc == 0, capsys.readouterr().err
    for name in ("config.json", "policy.json", "policy.safetensors", "metrics.csv", "learning_curve.png"):
        assert (out / name).exists(), name
    assert json.loads((out / "config.json").read_text())["demos"] == str(demo_store)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--episodes", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_return"] >= 475
    store = FeedbackStore(db)
    policies = [m for m in store.models() if m.kind == "policy"]
    assert len(policies) == 1 and len(store.lineage(policies[0].id)) == 4
    store.withdraw_annotator("sim-expert")
    assert store.model(policies[0].id).flagged
    store.close()


def test_train_from_a_jsonl_file_imports_it_with_lineage(tmp_path, demo_store):
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.pipeline import train

    res = train(TrainConfig(env="CartPole-v1", feedback="demonstration", demos=str(demo_store / "demos.jsonl"),
                            out=str(tmp_path / "r"), eval_episodes=2, progress=False, extra={"bc_max_epochs": 30}))
    assert res["learner"] == "bc" and res["demos"] == 4 and res["feedback_used"] == 4
    store = FeedbackStore(tmp_path / "r" / "feedback.db")
    assert store.annotator("dataset-demos").kind == "simulated"
    assert len(store.lineage(res["model_id"])) == 4
    store.close()


def test_train_dagger_and_maxent_jobs(tmp_path):
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.pipeline import train

    res = train(TrainConfig(env="FrozenLake-v1", feedback="demonstration", learner="maxent-irl", teacher="expert",
                            budget=30, out=str(tmp_path / "fl"), eval_episodes=2, progress=False,
                            extra={"irl_iters": 30}))
    assert res["feedback_used"] == 30 and (tmp_path / "fl" / "reward_heatmap.png").exists()
    assert len(res["reward"]) == 16
    assert main(["evaluate", str(tmp_path / "fl"), "--episodes", "2"]) == 0


def test_bc_settings_overrides_apply_over_the_learners_own_defaults():
    from rlhf_gym.jobs.demonstration import bc_settings
    from rlhf_gym.learners.dagger import DAGGER_SETTINGS

    assert bc_settings({}) == BCSettings() and BCSettings().patience > DAGGER_SETTINGS.patience
    assert bc_settings({}, DAGGER_SETTINGS) == DAGGER_SETTINGS  # DAgger's refits keep their short patience
    st = bc_settings({"bc_patience": "40", "bc_hidden": "32,16"}, DAGGER_SETTINGS)
    assert (st.patience, st.hidden, st.max_epochs) == (40, (32, 16), DAGGER_SETTINGS.max_epochs)


@pytest.mark.parametrize("extra, message", [
    (["--learner", "coach"], "must be one of bc, dagger"),
    (["--learner", "maxent-irl"], "transition table"),
    (["--demos", "ACROBOT"], "not CartPole-v1"),
    (["--demos", "EMPTY"], "no demonstrations"),
    (["--demos", "CONTINUOUS"], "not integers"),
    (["--set", "bc_bogus=1"], "bc_bogus"),
    (["--set", "bc_max_epochs=0"], "bc_max_epochs must be > 0"),
    (["--set", "bc_val_frac=1.5"], "bc_val_frac must be in"),
    (["--learner", "gail", "--set", "gen_ent_coef=-1"], "gen_ent_coef must be >= 0"),
    (["--learner", "airl", "--set", "disc_inputs=pixels"], "disc_inputs must be"),
    (["--learner", "airl", "--set", "disc_gp_absorbing=maybe"], "disc_gp_absorbing must be true or false"),
    (["--learner", "airl", "--set", "disc_history=2"], "disc_history must be in [0, 1]"),
    (["--teacher", "psychic"], "must be one of"),
])
def test_train_bad_input_exits_2(tmp_path, capsys, extra, message):
    acrobot = tmp_path / "acrobot.jsonl"
    write_jsonl(demos(lambda o: 0, "Acrobot-v1", 1, max_steps=5), acrobot)
    (tmp_path / "empty.jsonl").write_text("")
    cont = tmp_path / "cont.jsonl"
    cont.write_text(json.dumps({"obs": [[0.0] * 4] * 3, "acts": [[0.5], [0.2]], "rews": [1, 1]}) + "\n")
    swap = {"ACROBOT": str(acrobot), "EMPTY": str(tmp_path / "empty.jsonl"), "CONTINUOUS": str(cont)}
    extra = [swap.get(a, a) for a in extra]
    if "--demos" not in extra and "--teacher" not in extra:
        extra += ["--demos", str(acrobot)] if "maxent-irl" not in extra and "coach" not in extra else []
    rc = main(["train", "--env", "CartPole-v1", "--feedback", "demonstration", "--out", str(tmp_path / "r"),
               "--no-progress", *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# -- GAIL and AIRL ------------------------------------------------------------------------------------
def _disc_fixture(kind: str, gp: float | None = None, target: float | None = None, **settings):
    from stable_baselines3 import PPO

    from rlhf_gym.learners.adversarial import AdversarialSettings, demo_rows, disc_step, renormalise
    from rlhf_gym.learners.airl import AIRLDiscriminator
    from rlhf_gym.learners.gail import GAILDiscriminator
    from rlhf_gym.rewards.models import RewardModel

    env = make_env("CartPole-v1")
    expert = demo_rows(demos(cartpole_expert, "CartPole-v1", 4, max_steps=200))
    randoms = demo_rows(demos(None, "CartPole-v1", 30, epsilon=1.0, seed=1))
    assert randoms.absorbing.sum() == 30 and expert.absorbing.sum() == 0  # random episodes all end in a fall
    st = AdversarialSettings(**settings) if gp is None else AdversarialSettings(disc_gp=gp, **settings)
    reward = RewardModel.for_spaces(env.observation_space, env.action_space, seed=0, ensemble=1)
    reward.fit_input_normalisation(np.concatenate([expert.obs, randoms.obs]))
    disc = (GAILDiscriminator if kind == "gail" else AIRLDiscriminator)(reward, st)
    algo = PPO("MlpPolicy", env, seed=0, device="cpu", n_steps=64)  # an untrained (near-uniform) generator
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    half = len(randoms) // 2
    train_gen, held_gen = randoms.take(np.arange(half)), randoms.take(np.arange(half, len(randoms)))
    stats = {}
    for _ in range(150):
        stats = disc_step(disc, opt, expert, train_gen, algo, rng, 128, absorbing_target=target)
    renormalise(reward, expert, train_gen, rng)
    return reward, expert, held_gen, stats


@pytest.mark.parametrize("kind", ["gail", "airl"])
def test_discriminator_ranks_demonstrations_above_random_play(kind):
    reward, expert, held, stats = _disc_fixture(kind)
    assert stats["disc_accuracy"] > 0.65  # the gradient penalty keeps it from the 95-100% a collapse shows
    r_exp = reward.reward(expert.obs, expert.acts, expert.next_obs).mean()
    real = held.take(np.flatnonzero(~held.absorbing))
    r_rand = reward.reward(real.obs, real.acts, real.next_obs).mean()  # held-out random play
    assert r_exp > r_rand + 0.5, (r_exp, r_rand)
    # ending is anchored at 0 (what SB3 assumes after a done); the demonstrator's steps pay more than ending
    assert abs(float(reward.reward(expert.obs[:1], expert.acts[:1], None, np.array([True]))[0])) < 1e-5
    assert r_exp > 0


def test_gradient_penalty_smooths_the_discriminator_without_blinding_it():
    """``disc_gp``: the reward network's input gradient between demonstrated and generated rows is smaller
    with the penalty, and the discriminator still ranks demonstrations above random play."""

    def grad_norm(reward, a, b) -> float:
        xa = reward.features(a.obs[:200], a.acts[:200], a.next_obs[:200], a.absorbing[:200])
        xb = reward.features(b.obs[:200], b.acts[:200], b.next_obs[:200], b.absorbing[:200])
        x = (0.5 * xa[: len(xb)] + 0.5 * xb[: len(xa)]).requires_grad_(True)
        (g,) = torch.autograd.grad(reward.member_rewards(x).mean(0).sum(), x)
        return float(g.norm(dim=1).mean())

    plain, expert, held, _ = _disc_fixture("gail", gp=0.0)
    smooth, _, _, stats = _disc_fixture("gail")  # the default: 10
    assert stats["disc_grad_penalty"] > 0
    assert grad_norm(smooth, expert, held) < 0.7 * grad_norm(plain, expert, held)
    real = held.take(np.flatnonzero(~held.absorbing))
    assert (smooth.reward(expert.obs, expert.acts, expert.next_obs).mean()
            > smooth.reward(real.obs, real.acts, real.next_obs).mean() + 0.3)


@pytest.mark.parametrize("learner", ["gail", "airl"])
def test_gail_airl_jobs_save_a_policy_and_a_transferable_reward(tmp_path, demo_store, learner, capsys):
    out = tmp_path / learner
    rc = main(["train", "--env", "CartPole-v1", "--feedback", "demonstration", "--learner", learner, "--demos",
               str(demo_store / "demos.jsonl"), "--timesteps", "1024", "--out", str(out), "--eval-episodes", "2",
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    for name in ("policy.zip", "policy.json", "reward_model.safetensors", "reward_model.json", "learning_curve.png"):
        assert (out / name).exists(), name
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    store = FeedbackStore(out / "feedback.db")
    reward = [m for m in store.models() if m.kind == "reward"][0]
    policy = [m for m in store.models() if m.kind == "policy"][0]
    assert len(store.lineage(reward.id)) == 4 and store.lineage(policy.id) == store.lineage(reward.id)
    store.close()
    if learner == "airl":  # transfer: a fresh PPO on the recovered reward (the preference job's --reward)
        rc = main(["train", "--env", "CartPole-v1", "--feedback", "preference", "--reward", str(out), "--timesteps",
                   "512", "--out", str(tmp_path / "transfer"), "--eval-episodes", "2", "--no-progress"])
        assert rc == 0, capsys.readouterr().err


def test_airl_with_a_sac_generator_on_continuous_actions():
    from rlhf_gym.learners.adversarial import AdversarialSettings
    from rlhf_gym.learners.airl import train_airl

    trajs = demos(mountaincar_pump, "MountainCarContinuous-v0", 2)
    res = train_airl("MountainCarContinuous-v0", trajs, algo="sac", timesteps=1200, seed=0,
                     settings=AdversarialSettings(disc_every=100))
    assert res.env_steps == 1200 and res.disc_steps > 0 and res.history[-1]["disc_loss"] > 0
    a, _ = res.algo.predict(trajs[0].obs[0], deterministic=True)
    assert np.asarray(a).shape == (1,)
    # every reward in SAC's replay buffer is the current discriminator's, not the one it was stored under
    buf = res.algo.replay_buffer
    assert res.relabelled > 0
    now = res.reward.reward(buf.observations[:buf.pos, 0], res.algo.policy.unscale_action(buf.actions[:buf.pos, 0]),
                            buf.next_observations[:buf.pos, 0])
    np.testing.assert_allclose(buf.rewards[:buf.pos, 0], now, rtol=1e-4, atol=1e-5)


def test_gail_generator_acts_in_the_environment_make_env_builds(tmp_path):
    """An environment given as ``file.py:Class`` (old gym API) is one gym.make cannot build: the generator
    must get it through make_env, like every other part of the product."""
    from pathlib import Path

    from rlhf_gym.learners.gail import train_gail

    env_id = f"{Path(__file__).parent.parent / 'examples' / 'old_gym_tutorial.py'}:CartPoleEnv"
    trajs = demos(cartpole_expert, env_id, 2, max_steps=100)
    res = train_gail(env_id, trajs, timesteps=512, seed=0)
    assert res.env_steps == 512 and res.disc_steps > 0


def test_continuous_tasks_get_a_cached_sac_expert(tmp_path, monkeypatch):
    """A continuous-action task's expert is SAC, trained once and cached (discrete tasks keep PPO); it records
    demonstrations with real-valued actions; an evaluative teacher (discrete only) refuses the task by name."""
    from stable_baselines3 import SAC

    from rlhf_gym.feedback import teachers_evaluative as te
    from rlhf_gym.feedback.registry import TeacherRequest, make_teacher
    from rlhf_gym.feedback.teachers_demonstration import expert_for

    monkeypatch.setenv("RLHF_GYM_CACHE", str(tmp_path))
    assert te.expert_algo("Pendulum-v1") == "sac" and te.expert_algo("CartPole-v1") == "ppo"
    monkeypatch.setitem(te.EXPERT_RECIPES, "continuous", (("sac", 600, 300, {}),))  # a tiny schedule for the test
    monkeypatch.setitem(te.EXPERT_BARS, "Pendulum-v1", -5000.0)  # which the tiny schedule reaches
    act = expert_for("Pendulum-v1", {}, log=lambda _m: None)
    path = te.expert_path("Pendulum-v1", "sac")
    assert path.exists() and isinstance(te.load_expert(path), SAC)
    card = json.loads(te.expert_card_path(path).read_text())
    assert card["algo"] == "sac" and card["bar"] == -5000.0 and card["heldout_mean"] >= -5000.0
    a = act(make_env("Pendulum-v1").reset(seed=0)[0])
    assert a.shape == (1,) and a.dtype.kind == "f"
    with pytest.raises(ValueError, match="discrete action space"):
        make_teacher(TeacherRequest("evaluative", "oracle", "Pendulum-v1", seed=0, log=lambda _m: None))


def test_an_expert_below_the_bar_is_refused_and_never_cached(tmp_path, monkeypatch, capsys):
    """Every recipe's held-out return is judged against the task's bar; an expert that does not reach it is
    not cached, and the command that needed it exits 2 naming each recipe's return and ``--set expert=PATH``.
    A cached expert from before cards is judged once and used only if it reaches the bar."""
    from rlhf_gym.feedback import teachers_evaluative as te

    monkeypatch.setenv("RLHF_GYM_CACHE", str(tmp_path))
    assert te.expert_bar("CartPole-v1") == 475.0 and te.expert_bar("MountainCar-v0") == -110.0
    assert te.expert_bar("Pendulum-v1") == -200.0
    # two tiny discrete recipes: neither can reach CartPole's 475 in 256 steps
    monkeypatch.setitem(te.EXPERT_RECIPES, "discrete", (("ppo", 256, 256, {"n_steps": 64}),
                                                        ("dqn", 256, 256, {"learning_starts": 64})))
    with pytest.raises(te.ExpertError, match=r"PPO -?\d.*DQN -?\d.*--set expert=PATH"):
        te.load_or_train_expert("CartPole-v1", log=lambda _m: None)
    assert not list((tmp_path / "experts").glob("*.zip"))
    out = tmp_path / "demos"
    assert main(["demos", "record", "--env", "CartPole-v1", "--from", "expert", "--episodes", "1",
                 "--out", str(out)]) == 2
    assert "reached the bar 475.0" in capsys.readouterr().err
    # a card-less file in the cache (an old cache) is judged now: below the bar, it is not used
    from stable_baselines3 import PPO

    weak = PPO("MlpPolicy", make_env("CartPole-v1"), n_steps=64, seed=0, device="cpu")
    weak.save(str(te.expert_path("CartPole-v1", "ppo")))
    assert te.expert_card("CartPole-v1") is None
    card = json.loads(te.expert_card_path(te.expert_path("CartPole-v1", "ppo")).read_text())
    assert card["heldout_mean"] < 475.0 and card["heldout_episodes"] == te.HELDOUT_EPISODES


def test_airl_state_only_reward_ignores_the_action():
    """``disc_inputs=obs``: the recovered reward is r(s) (AIRL's form for transfer): two actions in the same
    state are paid the same, and the job saves a model that says so."""
    from rlhf_gym.learners.adversarial import AdversarialSettings
    from rlhf_gym.learners.airl import train_airl

    trajs = demos(cartpole_expert, "CartPole-v1", 2, max_steps=100)
    res = train_airl("CartPole-v1", trajs, timesteps=512, seed=0, settings=AdversarialSettings(disc_inputs="obs"))
    obs = np.stack([t.obs[5] for t in trajs])
    r0 = res.reward.reward(obs, np.zeros(len(obs), int), obs)
    r1 = res.reward.reward(obs, np.ones(len(obs), int), obs)
    assert res.reward.cfg.inputs == "obs" and np.allclose(r0, r1)
    assert res.disc_steps > 0


def test_the_reward_stays_anchored_to_ending_once_an_episode_has_ended():
    """A generator that stopped falling leaves no absorbing row in its recent window (CartPole's demos
    never end either); the reward must stay anchored to the absorbing state, not flip to mean-centring,
    under which half the states it visits would pay less than falling."""
    from rlhf_gym.learners.adversarial import demo_rows, renormalise
    from rlhf_gym.rewards.models import RewardModel

    env = make_env("CartPole-v1")
    expert = demo_rows(demos(cartpole_expert, "CartPole-v1", 2, max_steps=100))
    gen = demo_rows(demos(cartpole_expert, "CartPole-v1", 2, seed=3, max_steps=100))
    assert not expert.absorbing.any() and not gen.absorbing.any()
    reward = RewardModel.for_spaces(env.observation_space, env.action_space, seed=0, ensemble=1)
    reward.fit_input_normalisation(expert.obs)
    ending = (expert.obs[:1], expert.acts[:1], None, np.array([True]))
    renormalise(reward, expert, gen, np.random.default_rng(0))  # no episode of the run ever ended: the mean
    assert not bool(reward.anchored_to_absorbing)
    assert abs(float(reward.reward(expert.obs, expert.acts, expert.next_obs).mean())) < 0.2
    renormalise(reward, expert, gen, np.random.default_rng(0), ended=True)
    assert bool(reward.anchored_to_absorbing) and abs(float(reward.reward(*ending)[0])) < 1e-6


def test_transition_log_keeps_a_uniform_sample_of_the_whole_run():
    """The reservoir (``disc_history``) holds rows from the start of the run as well as the end, in about
    uniform proportion, while the recent window holds only the newest; terminations are counted."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlhf_gym.learners.adversarial import TransitionLog

    class Clock(gym.Env):
        observation_space = gym.spaces.Box(0, np.inf, (1,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            self.t = getattr(self, "t", 0)
            return np.array([self.t], np.float32), {}

        def step(self, action):
            self.t += 1
            return np.array([self.t], np.float32), 0.0, self.t % 100 == 0, False, {}

    log = TransitionLog(DummyVecEnv([Clock]), capacity=200, seed=0)
    log.reset()
    for _ in range(4000):
        log.step(np.array([0]))
    recent, old = log.recent(), log.history()
    assert len(recent) == len(old) == 200
    assert recent.obs[~recent.absorbing].min() > 3700
    ts = old.obs[~old.absorbing, 0]
    assert ts.min() < 400 and ts.max() > 3600 and 1600 < np.median(ts) < 2400
    assert log.terminations == 40 and old.absorbing.any()
    assert not TransitionLog(DummyVecEnv([Clock]), capacity=10).reservoir  # off unless seeded


@pytest.mark.parametrize("kind", ["gail", "airl"])
def test_ending_scores_as_generated_when_only_the_generator_ever_ends(kind):
    """CartPole's demonstrations never end and random play always does: with ``disc_absorbing_bound`` (and
    no gradient-penalty line to the absorbing state) ending is scored below held-out random play, so a fresh
    policy on the reward is not taught to fall; without them ending sits above that random play."""
    def gap(reward, held):
        real = held.take(np.flatnonzero(~held.absorbing))
        return float(reward.reward(real.obs, real.acts, real.next_obs).mean())  # ending pays 0 (the anchor)

    plain, _, held, _ = _disc_fixture(kind)
    bound, expert, held, _ = _disc_fixture(kind, target=0.0, disc_gp_absorbing=False)
    assert gap(bound, held) > 0 > gap(plain, held), (gap(bound, held), gap(plain, held))
    assert bound.reward(expert.obs, expert.acts, expert.next_obs).mean() > gap(bound, held)  # still ranked


def test_logpi_bonus_pays_the_acting_policys_minus_log_pi_in_normalised_units():
    """``gen_logpi_reward``: each step's reward gains coef x -log pi(a|s) / (disc_scale x the reward's scale),
    computed with the policy acting, for the action it took."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlhf_gym.learners.adversarial import LogPiBonus, log_prob
    from rlhf_gym.rewards.models import RewardModel

    env = make_env("CartPole-v1")
    reward = RewardModel.for_spaces(env.observation_space, env.action_space, seed=0, ensemble=1)
    reward.scale.fill_(0.5)
    venv = LogPiBonus(DummyVecEnv([lambda: make_env("CartPole-v1")] * 2), reward, coef=2.0, disc_scale=4.0)
    algo = PPO("MlpPolicy", venv, seed=0, device="cpu", n_steps=64)
    venv.algo = algo
    obs = venv.reset()
    acts = np.array([0, 1])
    venv.step_async(acts)
    _o, rews, _d, _i = venv.step_wait()
    lp = log_prob(algo, obs, acts).numpy()
    true = np.ones(2)  # CartPole pays 1 a step
    assert np.allclose(rews, true - 2.0 * lp / (4.0 * 0.5), atol=1e-5) and (rews > true).all()
