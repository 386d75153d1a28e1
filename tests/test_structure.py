"""The seams of the pipeline: one teacher registry, validated settings, no lasting process-global side
effects, withdrawal reaching a run in progress, determinism, and check_env on the wrappers we ship."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhf_gym.cli import main
from rlhf_gym.config import TrainConfig
from rlhf_gym.feedback import registry
from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.feedback.teachers_preference import PRESETS, SimulatedPreferenceTeacher, parse_teacher
from rlhf_gym.jobs.preference import train_preference
from rlhf_gym.store import FeedbackStore
from rlhf_gym.types import Feedback, Query


def test_every_feedback_type_resolves_its_teachers_in_one_registry():
    ev = registry.teachers("evaluative")
    pr = registry.teachers("preference")
    assert {"oracle", "expert", "noisy", "delayed", "random", "human", "web"} <= ev.keys()
    assert set(PRESETS) | {"human", "web"} <= pr.keys()
    assert ev["web"] is pr["web"]  # one web teacher serves every feedback type
    assert registry.resolve("preference", "mistake+skip").name == "mistake"
    with pytest.raises(ValueError, match="must be one of .*oracle"):
        registry.resolve("evaluative", "mistake+skip")  # evaluative teachers do not combine
    with pytest.raises(ValueError, match="psychic"):
        TrainConfig(feedback="preference", teacher="psychic").validate()


def test_web_teacher_is_open_to_every_annotator_unless_narrowed(tmp_path):
    store = FeedbackStore(tmp_path / "f.db")
    req = registry.TeacherRequest("evaluative", "web", "CartPole-v1", store=store, run_id="r",
                                  server="http://127.0.0.1:9", token="t")
    open_src = registry.make_teacher(req)
    assert open_src.annotator_id is None and store.annotator("person") is None
    from dataclasses import replace

    narrowed = registry.make_teacher(replace(req, annotator_id="alice"))
    assert narrowed.annotator_id == "alice" and store.annotator("alice").kind == "human"
    open_src.close()
    narrowed.close()
    store.close()


def test_each_teacher_draws_from_its_own_noise_stream():
    def req(name: str, seed: int = 0) -> registry.TeacherRequest:
        return registry.TeacherRequest("preference", name, "CartPole-v1", seed=seed)

    draws = {n: req(n).rng().random(4).tolist() for n in ("oracle", "mistake", "stochastic")}
    assert len({tuple(v) for v in draws.values()}) == 3
    assert req("mistake").rng().random(4).tolist() == draws["mistake"]  # reproducible
    assert req("mistake", seed=1).rng().random(4).tolist() != draws["mistake"]


def test_unknown_set_keys_are_an_error_listing_the_valid_ones(tmp_path, capsys):
    code = main(["train", "--env", "CartPole-v1", "--feedback", "evaluative", "--teacher", "random",
                 "--budget", "5", "--out", str(tmp_path / "r"), "--set", "mirrorbad=true", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "mirrorbad" in err and "mirror_bad" in err
    code = main(["train", "--env", "CartPole-v1", "--feedback", "preference", "--teacher", "oracle",
                 "--budget", "5", "--out", str(tmp_path / "p"), "--set", "ensembel=2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "ensembel" in err and "ensemble" in err
    assert not (tmp_path / "r" / "feedback.db").exists()  # refused before anything was written


class _ThreadProbe(FeedbackSource):
    """Answers nothing; records the torch thread count the job runs with."""

    seen: list[int] = []

    def __init__(self, req: registry.TeacherRequest) -> None:
        super().__init__(str(req.annotator_id), req.store, req.run_id)
        _ThreadProbe.seen.append(torch.get_num_threads())
        self.stopped = True

    def _submit(self, queries: list[Query]) -> None:
        pass

    def _collect(self, step: int | None) -> list[Feedback]:
        return []


def test_two_jobs_with_different_thread_settings_in_one_process(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, ("evaluative", "probe"),
                        registry.TeacherEntry("evaluative", "probe", _ThreadProbe))
    _ThreadProbe.seen = []
    before = torch.get_num_threads()
    for i, n in enumerate((2, 1)):
        cfg = TrainConfig(env="CartPole-v1", feedback="evaluative", teacher="probe", budget=1, threads=n,
                          out=str(tmp_path / f"r{i}"), progress=False, eval_episodes=1,
                          extra={"warmup_steps": 10})
        from rlhf_gym.pipeline import train

        train(cfg)
        assert torch.get_num_threads() == before
    assert _ThreadProbe.seen == [2, 1]


class _WithdrawingTeacher(SimulatedPreferenceTeacher):
    """Oracle answers alternately signed by alice and bob; bob withdraws after the first round's answers."""

    def __init__(self, req: registry.TeacherRequest) -> None:
        super().__init__(parse_teacher("oracle"), req.rng(), "alice", req.store, req.run_id)
        for a in ("alice", "bob"):
            req.store.add_annotator(a, kind="simulated")
        self.annotator_id = None  # type: ignore[assignment]  # queries open to both annotators
        self.posts = 0

    def _submit(self, queries: list[Query]) -> None:
        self.posts += 1
        if self.posts == 2:  # bob has answered round 1 and withdraws while the run goes on
            self.store.withdraw_annotator("bob", actor="bob")
        for i, q in enumerate(queries):
            fb = self._record(q, self.answer(q))
            self._ready.append(Feedback(fb.query_id, "bob" if (i % 2 and self.posts == 1) else "alice", fb.value,
                                        fb.asked_at, fb.answered_at, fb.step, fb.data))


def test_withdrawal_mid_run_is_out_of_the_next_fit(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, ("preference", "withdrawing"),
                        registry.TeacherEntry("preference", "withdrawing", _WithdrawingTeacher))
    cfg = TrainConfig(env="CartPole-v1", feedback="preference", teacher="withdrawing", budget=12, seed=0,
                      out=str(tmp_path / "run"), timesteps=2048, progress=False, eval_episodes=1,
                      extra={"rounds": 3, "query_episodes": 2, "eval_points": 1, "n_envs": 2})
    res = train_preference(cfg)
    store = FeedbackStore(tmp_path / "run" / "feedback.db")
    bob = {int(f.id) for f in store.feedback(run_id=res["run_id"], annotator_id="bob", include_withdrawn=True)}
    assert bob, "bob answered in round 1"
    first, *later = res["model_ids"]
    assert bob <= set(store.lineage(first))  # the first reward model did use bob's labels ...
    assert later and all(not bob & set(store.lineage(m)) for m in later)  # ... no later fit does
    policy = [m for m in store.models() if m.kind == "policy"][0]
    assert policy.flagged  # the policy trained so far used them: flagged, as withdrawal always does
    store.close()


def test_preference_loop_is_deterministic(tmp_path):
    from safetensors.numpy import load_file

    def run(name: str) -> dict[str, np.ndarray]:
        cfg = TrainConfig(env="CartPole-v1", feedback="preference", teacher="mistake", budget=8, seed=3,
                          out=str(tmp_path / name), timesteps=1024, progress=False, eval_episodes=1,
                          extra={"rounds": 2, "query_episodes": 2, "eval_points": 1, "n_envs": 2})
        train_preference(cfg)
        return load_file(str(tmp_path / name / "reward_model.safetensors"))

    a, b = run("a"), run("b")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    sa, sb = FeedbackStore(tmp_path / "a" / "feedback.db"), FeedbackStore(tmp_path / "b" / "feedback.db")
    assert [f.value for f in sa.feedback()] == [f.value for f in sb.feedback()]
    sa.close()
    sb.close()


def test_check_env_on_the_reward_wrapper():
    from gymnasium.utils.env_checker import check_env

    from rlhf_gym.envs import make_env
    from rlhf_gym.rewards.models import RewardModel
    from rlhf_gym.rewards.wrappers import LearnedRewardWrapper

    for env_id in ("CartPole-v1", "Pendulum-v1"):
        env = make_env(env_id)
        model = RewardModel.for_spaces(env.observation_space, env.action_space, seed=0)
        check_env(LearnedRewardWrapper(env, model).unwrapped)
        check_env(LearnedRewardWrapper(env, model), skip_render_check=True)
        env.close()


def test_library_calls_never_read_the_project_file_from_the_current_directory(tmp_path, monkeypatch):
    """Only the command line reads ./rlhf-gym.toml; a job gets the consent text through ``TrainConfig.policy``."""
    from rlhf_gym.governance.consent import DEFAULT_CONSENT, ensure_terminal_consent, load_policy

    (tmp_path / "rlhf-gym.toml").write_text('[feedback]\nconsent_text = "Project text XYZ."\n')
    monkeypatch.chdir(tmp_path)
    shown: list[str] = []
    store = FeedbackStore(tmp_path / "s.db")
    assert ensure_terminal_consent(store, "p1", input_fn=lambda _p: "yes", out=shown.append)
    assert DEFAULT_CONSENT in shown[0] and "XYZ" not in shown[0]
    src = registry.make_teacher(registry.TeacherRequest("evaluative", "human", "CartPole-v1", store=store,
                                                        annotator_id="p2", consent=load_policy("rlhf-gym.toml")))
    src.input_fn, src.out = (lambda _p: "yes"), shown.append
    assert src._consent() and "Project text XYZ." in shown[-1]
    store.close()


def test_teachers_command_lists_the_registry(capsys):
    from rlhf_gym.cli import main
    from rlhf_gym.jobs import feedback_types

    assert main(["teachers"]) == 0
    out = capsys.readouterr().out
    for kind in feedback_types():
        assert f"{kind}:" in out
        for name in registry.teachers(kind):
            assert f"  {name} " in out
    assert main(["teachers", "--feedback", "nope"]) == 2


def test_the_web_side_never_imports_an_entry_point_named_by_a_request():
    from rlhf_gym.envs import EnvError, make_registered_env

    for bad in ("os:system", "subprocess:Popen", "evil.py:Env"):
        with pytest.raises(EnvError, match="not a registered environment id"):
            make_registered_env(bad)
    make_registered_env("CartPole-v1").close()


@pytest.mark.parametrize("item", ["noise=nan", "lr=inf", "margin=-Infinity"])
def test_set_values_must_be_finite_numbers(item):
    from rlhf_gym.cli import main

    assert main(["train", "--set", item, "--out", "/tmp/never-made", "--no-progress"]) == 2


def test_asking_for_cuda_without_one_is_an_error_for_every_job():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for feedback in ("evaluative", "preference"):
        with pytest.raises(ValueError, match="no CUDA GPU"):
            TrainConfig(feedback=feedback, device="cuda").validate()


def test_sb3_leaves_no_log_folder_behind(tmp_path, monkeypatch):
    """SB3 without a logger makes an empty /tmp/SB3-<date> folder per learn(); our algorithms never do."""
    import tempfile

    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_gym.learners.preference import make_algo

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    algo = make_algo("ppo", make_vec_env("CartPole-v1", n_envs=2, seed=0), 0, 128)
    algo.learn(128)
    assert not list(tmp_path.glob("SB3-*"))


def test_every_job_hands_the_projects_consent_text_to_a_person(tmp_path):
    """The jobs build their teacher through one helper, so no feedback type can drop ``--policy``."""
    from rlhf_gym.jobs import teacher_for

    (tmp_path / "p.toml").write_text('[feedback]\nconsent_text = "Project text XYZ."\n')
    store = FeedbackStore(tmp_path / "s.db")
    for feedback in ("evaluative", "preference", "demonstration", "tradeoff"):
        cfg = TrainConfig(feedback=feedback, teacher="human", policy=str(tmp_path / "p.toml"), annotator=f"p-{feedback}")
        src = teacher_for(cfg, store, None, tmp_path, **({"settings": {"n_objectives": 2}} if feedback == "tradeoff" else {}))
        assert src.policy is not None and src.policy.consent_text == "Project text XYZ.", feedback
    store.close()
