"""Multi-objective RLHF: vector-reward environments, the weight posterior, active questions, trade-off
teachers, the terminal prompt, and the trade-off job end to end (tiny budgets)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mo_gymnasium")

from rlhf_gym.feedback.teachers_tradeoff import (  # noqa: E402
    PopulationSource,
    SimulatedTradeoffTeacher,
    TerminalOutcomeSource,
    parse_weights,
)
from rlhf_gym.learners.tradeoff import answered_outcomes, learn_weights  # noqa: E402
from rlhf_gym.morl.weights import WeightPosterior, cosine, outcome_scale, pair_scores, select_pair  # noqa: E402
from rlhf_gym.types import OutcomeQuery, Query  # noqa: E402


def _learn(k: int, how: str, seed: int, weights=None, random_teacher: bool = False, budget: int = 20, n: int = 40):
    rng = np.random.default_rng(seed)
    outcomes = rng.random((n, k)) * 10
    w = np.asarray(weights, float) if weights is not None else rng.dirichlet(np.ones(k))
    teacher = SimulatedTradeoffTeacher(w, np.random.default_rng([seed, 5]), random=random_teacher)
    cos: list[float] = []
    res = learn_weights(teacher, outcomes,
                        lambda: WeightPosterior(k, outcome_scale(outcomes), n_samples=2000,
                                                rng=np.random.default_rng([seed, 6])),
                        budget, how, np.random.default_rng([seed, 7]),
                        on_answer=lambda t, r: cos.append(cosine(r.posterior.mean, w)))
    return res, w, cos


def test_one_answer_gives_the_hand_computed_posterior():
    # "(1, 0) beats (0, 1)" says w0 > 0.5; with a uniform prior and a near-deterministic answer model the
    # posterior of w0 is uniform on (0.5, 1): mean 0.75, sd 0.5 / sqrt(12) = 0.144
    post = WeightPosterior(2, scale=1.0, beta=500.0, n_samples=20_000, rng=np.random.default_rng(0))
    post.update([1.0, 0.0], [0.0, 1.0], 1.0)
    assert post.mean[0] == pytest.approx(0.75, abs=0.01)
    assert np.sqrt(post.cov[0, 0]) == pytest.approx(0.144, abs=0.01)
    assert post.samples[:, 0].min() > 0.45  # resampled and moved: every particle is on the right side
    post.update([0.0, 3.0], [1.0, 0.0], 1.0)  # and "(0, 3) beats (1, 0)": 3 w1 > w0, so w0 < 0.75
    assert post.mean[0] == pytest.approx(0.625, abs=0.01)


def test_tie_and_skip():
    post = WeightPosterior(2, n_samples=2000, rng=np.random.default_rng(0))
    before = post.mean.copy()
    post.update([1, 0], [0, 1], None)  # skipped: nothing learned
    assert not post.answers and np.allclose(post.mean, before)
    post.update([1, 0], [0, 1], 0.5)  # a tie pulls towards equal weights
    assert abs(post.mean[0] - 0.5) < 0.02
    with pytest.raises(ValueError, match="3 entries"):
        WeightPosterior(3).update([1, 0], [0, 1], 1.0)


def test_posterior_concentrates_with_the_oracle_not_with_the_random_teacher():
    truth = np.array([0.85, 0.15])
    oracle = [np.abs(_learn(2, "info", s, truth)[0].posterior.mean - truth).max() for s in range(5)]
    rand = [np.abs(_learn(2, "info", s, truth, random_teacher=True)[0].posterior.mean - truth).max() for s in range(5)]
    assert max(oracle) < 0.05, oracle
    assert np.mean(rand) > 0.2, rand


def test_active_question_is_more_informative_where_the_answer_is_known():
    # (1, 0) vs (0, 1) splits a uniform prior in half; (2, 2) vs (1, 1) is answered the same by every weight
    post = WeightPosterior(2, scale=2.0, beta=50.0, n_samples=4000, rng=np.random.default_rng(0))
    outcomes = np.array([[2.0, 2.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    pairs = np.array([[0, 1], [2, 3]])
    for how in ("info", "volume"):
        s = pair_scores(post, outcomes, pairs, how)
        assert s[1] > s[0] + 0.3, (how, s)
        for seed in range(5):
            assert set(select_pair(post, outcomes, how, np.random.default_rng(seed))) == {2, 3}


def test_active_selection_needs_fewer_questions_than_random():
    def questions_to(how: str, seed: int) -> int:
        _, _, cos = _learn(3, how, seed, budget=30)
        return next((i + 1 for i, c in enumerate(cos) if c >= 0.99), 31)

    active = [questions_to("info", s) for s in range(5)]
    rand = [questions_to("random", s) for s in range(5)]
    assert sum(active) < 0.6 * sum(rand), (active, rand)


def test_outcome_query_round_trip_and_validation():
    q = OutcomeQuery.make([1.0, -3.0], [8.2, -5.0], ("treasure", "time"), run_id="r", meta={"left": 1})
    back = Query.from_dict(q.to_dict())
    assert isinstance(back, OutcomeQuery) and back.left.tolist() == [1.0, -3.0] and back.objectives == ("treasure", "time")
    with pytest.raises(ValueError, match="same length"):
        OutcomeQuery.make([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="objective names"):
        OutcomeQuery.make([1.0, 2.0], [1.0, 2.0], ("a",))


def test_parse_weights_errors():
    assert parse_weights("3,7").tolist() == [0.3, 0.7]
    with pytest.raises(ValueError, match="3 objectives"):
        parse_weights("0.3,0.7", 3)
    with pytest.raises(ValueError, match="non-negative"):
        parse_weights("-1,2")
    with pytest.raises(ValueError, match="comma-separated"):
        parse_weights("a,b")


def test_vector_reward_wrapper_and_scalarised_env_pass_check_env():
    from gymnasium.utils.env_checker import check_env

    from rlhf_gym.envs import EnvError
    from rlhf_gym.morl.envs import ScalarisedReward, make_vector_env, objective_names

    env = make_vector_env("mo-cartpole-v1")
    assert objective_names("mo-cartpole-v1", env) == ("survival", "centred")
    env.reset(seed=0)
    _, r, *_ = env.step(1)
    assert r.shape == (2,) and r[0] == 1.0 and r[1] <= 0
    check_env(env, skip_render_check=True)
    scal = ScalarisedReward(make_vector_env("deep-sea-treasure-v0"), [0.5, 0.5])
    check_env(scal, skip_render_check=True)
    with pytest.raises(EnvError, match="scalar reward"):
        make_vector_env("CartPole-v1")
    with pytest.raises(ValueError, match="2 objectives need 2 weights"):
        ScalarisedReward(make_vector_env("deep-sea-treasure-v0"), [1.0, 0.0, 0.0])


def test_terminal_prompt_with_scripted_input(store):
    store.add_run("r")
    answers = iter(["yes", "x", "2", "=", "s", "q"])
    shown: list[str] = []
    src = TerminalOutcomeSource("person-a", store=store, run_id="r", input_fn=lambda _p: next(answers),
                                out=shown.append)
    store.add_annotator("person-a", kind="human")
    qs = [OutcomeQuery.make([8.2, -3.0], [0.7, -1.0], ("treasure", "time"), run_id="r") for _ in range(4)]
    src.post(qs)
    got = src.poll()
    assert [f.value for f in got] == [0.0, 0.5, None]  # "x" asked again; "q" stopped before the 4th
    assert src.stopped
    text = "\n".join(shown)
    assert "treasure" in text and "8.20" in text and "-1.00" in text and "Please type" in text
    assert store.has_consent("person-a")
    assert len(store.feedback(run_id="r", kind="outcome")) == 3


def test_terminal_prompt_without_consent_stores_nothing(store):
    store.add_run("r")
    answers = iter(["no"])
    src = TerminalOutcomeSource("person-b", store=store, run_id="r", input_fn=lambda _p: next(answers),
                                out=lambda _s: None)
    store.add_annotator("person-b", kind="human")
    src.post([OutcomeQuery.make([1.0, 0.0], [0.0, 1.0], run_id="r")])
    from rlhf_gym.feedback.sources import StopFeedback

    with pytest.raises(StopFeedback):
        src.poll()
    assert store.feedback(run_id="r") == []


def test_population_per_annotator_weights_and_withdrawal_mid_run(store):
    rng = np.random.default_rng(0)
    outcomes = rng.random((40, 2)) * 10
    store.add_run("r")
    members = []
    for i, w in enumerate(([0.9, 0.1], [0.1, 0.9])):
        store.add_annotator(f"p-{i}", kind="simulated")
        members.append(SimulatedTradeoffTeacher(w, np.random.default_rng(i), f"p-{i}", store, "r"))
    pop = PopulationSource(members, "pop", store, "r")

    def withdraw(t, res):
        if t == 10:
            store.withdraw_annotator("p-1", reason="test")

    res = learn_weights(pop, outcomes, lambda: WeightPosterior(2, outcome_scale(outcomes), n_samples=2000,
                                                                rng=np.random.default_rng(1)),
                        24, "info", np.random.default_rng(2), run_id="r", store=store, on_answer=withdraw)
    assert res.rebuilt == 1
    who = [fb.annotator_id for _, fb in answered_outcomes(store, "r")]
    assert set(who) == {"p-0"} and len(who) == 5 + 14  # p-0's 5 before the withdrawal, all 14 after
    assert abs(res.posterior.mean[0] - 0.9) < 0.05  # only p-0's weights are left in the posterior


def test_question_loop_reads_each_answer_from_the_store_once(store, monkeypatch):
    """Incremental reads: n questions read n answers in all (not every answer again at each question)."""
    rng = np.random.default_rng(0)
    outcomes = rng.random((30, 2)) * 10
    store.add_run("r")
    store.add_annotator("sim", kind="simulated")
    teacher = SimulatedTradeoffTeacher([0.3, 0.7], np.random.default_rng(1), "sim", store, "r")
    read: list[int] = []
    since = store.answers_since
    monkeypatch.setattr(store, "answers_since", lambda *a, **k: (r := since(*a, **k), read.append(len(r["answers"])))[0])
    monkeypatch.setattr(store, "feedback", lambda *a, **k: pytest.fail("the loop read every answer again"))
    res = learn_weights(teacher, outcomes, lambda: WeightPosterior(2, outcome_scale(outcomes), n_samples=1000,
                                                                    rng=np.random.default_rng(2)),
                        12, "info", np.random.default_rng(3), run_id="r", store=store)
    assert sum(read) == 12 and len(read) == 12 and len(res.answers) == 12
    assert cosine(res.posterior.mean, [0.3, 0.7]) > 0.99


def _cli(*args: str) -> int:
    from rlhf_gym.cli import main

    return main(list(args))


def test_bad_input_exits_2(tmp_path, capsys):
    base = ["train", "--feedback", "tradeoff", "--budget", "3", "--out", str(tmp_path / "r")]
    assert _cli(*base, "--env", "deep-sea-treasure-v0", "--set", "selektion=info") == 2
    assert "selektion" in capsys.readouterr().err
    assert _cli(*base, "--env", "deep-sea-treasure-v0", "--set", "teacher_weights=0.2,0.3,0.5") == 2
    assert "2 objectives" in capsys.readouterr().err
    assert _cli(*base, "--env", "CartPole-v1") == 2
    assert "scalar reward" in capsys.readouterr().err
    assert _cli(*base, "--env", "deep-sea-treasure-v0", "--set", "selection=best") == 2
    assert _cli(*base, "--env", "deep-sea-treasure-v0", "--set", "pareto=grid") == 2
    assert "pareto must be one of ols, sweep" in capsys.readouterr().err
    assert _cli(*base, "--env", "deep-sea-treasure-v0", "--set", "model_beta=sure") == 2
    assert "model_beta" in capsys.readouterr().err
    assert _cli(*base, "--env", "deep-sea-treasure-v0", "--teacher", "stochastic") == 2
    assert not (tmp_path / "r" / "feedback.db").exists()


def test_job_end_to_end_on_deep_sea_treasure(tmp_path):
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.pipeline import evaluate_run, train

    out = tmp_path / "run"
    res = train(TrainConfig(env="deep-sea-treasure-v0", feedback="tradeoff", teacher="oracle", budget=6,
                            out=str(out), eval_episodes=2, progress=False,
                            extra={"teacher_weights": "0.3,0.7", "n_policies": 3, "policy_timesteps": 1024,
                                   "final_timesteps": 512}))
    assert res["feedback_used"] == 6 and len(res["learned_weights"]) == 2
    for f in ("posterior.json", "pareto_set.json", "tradeoff.json", "front.png", "policy.zip", "config.json",
              "metrics.csv", "feedback.db", "reference_policy.zip"):
        assert (out / f).exists(), f
    post = json.loads((out / "posterior.json").read_text())
    assert len(post["pooled"]["cov"]) == 2 and post["pooled"]["answers"] == 6
    ps = json.loads((out / "pareto_set.json").read_text())
    trained = [p for p in ps["policies"] if not p["checkpoint"]]  # the rest: checkpoints the archive kept
    assert len(trained) == 3 and len(ps["policies"][0]["returns"]) == 2
    ev = evaluate_run(out, episodes=2)
    assert set(ev) >= {"objective_returns", "learned_weights", "weights_cosine", "utility_ratio"}
    assert len(ev["objective_returns"]) == 2
    assert ev["weights_cosine"] == pytest.approx(cosine(ev["learned_weights"], [0.3, 0.7]))
    from rlhf_gym.pipeline import video_run

    video = video_run(out, max_steps=20)
    assert video.exists() and video.stat().st_size > 1000


def test_job_with_a_population_reports_each_annotator(tmp_path):
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.pipeline import evaluate_run, train
    from rlhf_gym.store import FeedbackStore

    out = tmp_path / "pop"
    res = train(TrainConfig(env="deep-sea-treasure-v0", feedback="tradeoff", teacher="population", budget=6,
                            out=str(out), eval_episodes=1, progress=False,
                            extra={"teacher_population": "0.9,0.1;0.1,0.9", "n_policies": 2, "policy_timesteps": 256,
                                   "final_timesteps": 0, "aggregate": "mean"}))
    assert set(res["annotator_weights"]) == {"sim-population-00", "sim-population-01"}
    assert len(res["annotator_spread"]) == 1
    store = FeedbackStore(out / "feedback.db")
    who = [f.annotator_id for f in store.feedback(kind="outcome")]
    assert store.export_jsonl(tmp_path / "labels.jsonl") == 6  # outcome answers travel like any label
    store.close()
    other = FeedbackStore(tmp_path / "other.db")
    assert other.import_jsonl(tmp_path / "labels.jsonl") == 6
    assert all(isinstance(q, OutcomeQuery) for q in other.queries(kind="outcome"))
    other.close()
    assert sorted(who) == ["sim-population-00"] * 3 + ["sim-population-01"] * 3
    mean = np.mean(list(res["annotator_weights"].values()), axis=0)
    assert np.allclose(res["learned_weights"], mean)  # aggregate=mean: each person counts equally
    ev = evaluate_run(out, episodes=1)
    assert set(ev["annotator_weights_cosine"]) == set(res["annotator_weights"])


def test_learned_rationality_tells_an_oracle_from_a_noisy_teacher():
    outcomes = np.random.default_rng(0).random((40, 2)) * 10
    betas = {}
    for name, teacher_beta in (("oracle", None), ("noisy", 2.0)):
        teacher = SimulatedTradeoffTeacher([0.7, 0.3], np.random.default_rng(1), beta=teacher_beta)
        res = learn_weights(teacher, outcomes, lambda: WeightPosterior(2, outcome_scale(outcomes), beta=None,
                                                                        n_samples=2000, rng=np.random.default_rng(2)),
                            30, "random", np.random.default_rng(3))
        betas[name] = res.posterior.beta
    assert betas["oracle"] > 20 and betas["noisy"] < 6, betas


def test_missing_extra_is_named(monkeypatch):
    import sys

    from rlhf_gym.envs import EnvError
    from rlhf_gym.morl.envs import make_vector_env

    monkeypatch.setitem(sys.modules, "mo_gymnasium", None)  # as if the extra were not installed
    with pytest.raises(EnvError, match=r"rlhf-gym\[morl\]"):
        make_vector_env("deep-sea-treasure-v0")
    make_vector_env("mo-cartpole-v1").close()  # our own vector environments need no extra


def test_the_archive_keeps_checkpoints_and_leaves_the_training_unchanged(tmp_path):
    """The same sweep with and without the archive: the final policies come out the same (the checkpoint
    callback only looks), each archived checkpoint was not dominated by the set when it was kept, and the
    front's hypervolume can only grow."""
    from rlhf_gym.morl import policies as P

    env, names, grid = "deep-sea-treasure-v0", ("treasure", "time"), P.weight_grid(2, 3)
    plain = P.build_pareto_set(env, names, grid, 3072, tmp_path / "plain", seed=1, eval_episodes=1,
                               log=lambda _m: None, checkpoints=0)
    arch = P.build_pareto_set(env, names, grid, 3072, tmp_path / "arch", seed=1, eval_episodes=1,
                              log=lambda _m: None, checkpoints=6)
    kept = [e.checkpoint for e in arch.entries]
    assert sum(not k for k in kept) == len(plain.entries) < len(kept)
    finals = [e.returns for e, k in zip(arch.entries, kept, strict=True) if not k]
    assert finals == [e.returns for e in plain.entries]  # the training is unchanged
    for i, k in enumerate(kept):
        before = arch.returns[:i]
        if k and len(before):
            assert not np.any(np.all(before >= arch.returns[i] - 1e-9, axis=1))
    ref = (0.0, -25.0)
    assert P.hypervolume_2d(arch.front(), ref) >= P.hypervolume_2d(plain.front(), ref)
