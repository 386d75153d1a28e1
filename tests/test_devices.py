"""``--device`` reaches every model a job trains: the reward model's fit, the evaluative learners, BC/DAgger,
GAIL/AIRL's discriminator and SB3 generator, the trade-off job's SB3 policies; every job records where it ran.

There is no GPU here. ``fake_cuda`` tells PyTorch it has one and records every request to move a model or a
tensor to ``cuda`` (doing the move on the CPU instead), and every device SB3 is asked for (building it on the
CPU), so a test sees that a job given ``auto`` on a GPU machine would really put its models on the GPU. Data
that follows a model's own device (``model.device``) then stays on the CPU, so these tests cannot catch a
tensor left on the wrong device; only a run on a real GPU can.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rlhf_gym.cli import main
from rlhf_gym.config import TrainConfig
from rlhf_gym.devices import resolve_device
from rlhf_gym.rewards.models import RewardModel
from rlhf_gym.rewards.training import fit_reward_model, normalise_output, reinitialise
from rlhf_gym.types import Segment


def _is_cuda(d: object) -> bool:
    return isinstance(d, str | torch.device) and str(d).startswith("cuda")


class CudaRequests:
    """What was asked to go to a CUDA device: module class names, tensor moves; the devices SB3 models were
    built on (fresh or loaded) and loaded on."""

    def __init__(self) -> None:
        self.modules: list[str] = []
        self.tensors = 0
        self.sb3: list[str] = []
        self.sb3_loads: list[str] = []


@pytest.fixture
def fake_cuda(monkeypatch):
    """PyTorch and SB3 believe there is one CUDA GPU; moves to it are recorded and done on the CPU."""
    import stable_baselines3.common.base_class as base_class
    import stable_baselines3.common.save_util as save_util

    seen = CudaRequests()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    module_to, tensor_to = torch.nn.Module.to, torch.Tensor.to

    def redirect(args: tuple, kwargs: dict) -> tuple[tuple, dict, bool]:
        hit = any(_is_cuda(a) for a in args) or _is_cuda(kwargs.get("device"))
        args = tuple("cpu" if _is_cuda(a) else a for a in args)
        if _is_cuda(kwargs.get("device")):
            kwargs = {**kwargs, "device": "cpu"}
        return args, kwargs, hit

    def spy_module_to(self, *args, **kwargs):
        args, kwargs, hit = redirect(args, kwargs)
        if hit:
            seen.modules.append(type(self).__name__)
        return module_to(self, *args, **kwargs)

    def spy_tensor_to(self, *args, **kwargs):
        args, kwargs, hit = redirect(args, kwargs)
        seen.tensors += int(hit)
        return tensor_to(self, *args, **kwargs)

    real_get_device = base_class.get_device

    def spy_get_device(device="auto"):
        seen.sb3.append(str(device))
        return real_get_device("cpu")

    def spy_load_device(device="auto"):
        seen.sb3_loads.append(str(device))
        return real_get_device("cpu")

    monkeypatch.setattr(torch.nn.Module, "to", spy_module_to)
    monkeypatch.setattr(torch.Tensor, "to", spy_tensor_to)
    monkeypatch.setattr(base_class, "get_device", spy_get_device)
    monkeypatch.setattr(save_util, "get_device", spy_load_device)
    return seen


def _pairs(n: int = 12, seed: int = 0) -> list[tuple[Segment, Segment, float]]:
    """Clips of a 3-d observation where the first coordinate is the reward (label: the larger sum wins)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        segs = []
        for _ in range(2):
            obs = rng.normal(size=(5, 3)).astype(np.float32)
            segs.append(Segment(obs, rng.integers(2, size=5), obs, obs[:, 0].astype(np.float64), np.zeros(5, bool)))
        a, b = segs
        out.append((a, b, float(a.rews.sum() > b.rews.sum())))
    return out


def _model(seed: int = 0) -> RewardModel:
    return RewardModel.for_spaces(gym.spaces.Box(-5, 5, (3,)), gym.spaces.Discrete(2), seed=seed)


# -- the device itself ---------------------------------------------------------------------------------------
def test_auto_follows_what_torch_sees(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda"


def test_cuda_without_a_gpu_exits_2_for_train_and_reward_retrain(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--env", "CartPole-v1", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    (tmp_path / "r2").mkdir()
    assert main(["reward", "retrain", str(tmp_path / "r2"), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


# -- the reward model ----------------------------------------------------------------------------------------
def test_reward_fit_on_a_device_saves_cpu_tensors_that_load_back(tmp_path):
    model = _model()
    pairs = _pairs()
    m = fit_reward_model(model, pairs, np.random.default_rng(0), device="cpu")
    normalise_output(model, pairs)
    assert m["train_accuracy"] > 0.7
    assert {p.device.type for p in model.parameters()} == {"cpu"} and model.device.type == "cpu"
    path = model.save(tmp_path / "rm.safetensors")
    assert {t.device.type for t in load_file(str(path)).values()} == {"cpu"}
    back = RewardModel.load(path, device="cpu")
    assert back.device.type == "cpu"
    a = pairs[0][0]
    np.testing.assert_array_equal(back.reward(a.obs, a.acts), model.reward(a.obs, a.acts))


def test_numpy_inference_follows_the_weights_when_they_change_or_move():
    """The numpy fast path reads CPU copies of the weights: they must follow every change, in place or not."""
    model = _model()
    a = _pairs(1)[0][0]

    def torch_reward() -> np.ndarray:
        with torch.no_grad():
            raw = model.member_rewards(model.features(a.obs, a.acts, None, None)).mean(0).cpu().numpy()
        return (raw - float(model.anchor)) / float(model.scale)

    np.testing.assert_allclose(model.reward(a.obs, a.acts), torch_reward(), atol=1e-6)
    fit_reward_model(model, _pairs(), np.random.default_rng(0))  # optimiser steps: in place
    np.testing.assert_allclose(model.reward(a.obs, a.acts), torch_reward(), atol=1e-6)
    model._apply(lambda t: t * 1.5 if t.is_floating_point() else t)  # what .to(device) does: new tensors
    np.testing.assert_allclose(model.reward(a.obs, a.acts), torch_reward(), atol=1e-6)
    model.scale.fill_(2.0)
    model.obs_mean.fill_(0.3)
    np.testing.assert_allclose(model.reward(a.obs, a.acts), torch_reward(), atol=1e-6)


def test_reward_fit_is_asked_to_run_on_the_gpu(fake_cuda):
    model = _model()
    fit_reward_model(model, _pairs(), np.random.default_rng(0), device=resolve_device("auto"))
    assert "RewardModel" in fake_cuda.modules  # the model went to cuda (the pairs follow model.device)


def test_building_and_reinitialising_leave_the_global_rng_alone_and_repeat_by_seed():
    state = torch.random.get_rng_state()
    a, b = _model(seed=3), _model(seed=3)
    reinitialise(a, 11)
    reinitialise(b, 11)
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


# -- the learners --------------------------------------------------------------------------------------------
def test_evaluative_learners_train_and_act_on_their_device(fake_cuda):
    from rlhf_gym.learners.common import History
    from rlhf_gym.learners.evaluative_loop import make_learner

    for name in ("tamer", "coach", "reinforce"):
        fake_cuda.modules.clear()
        fake_cuda.tensors = 0
        learner = make_learner(name, 4, 2, np.random.default_rng(0), device=resolve_device("auto"))
        assert fake_cuda.modules == ["MLP"]
        hist = History()
        seen = hist.add(0, np.zeros(4), 1)
        learner.learn(1.0, seen, 1, hist)
        assert fake_cuda.tensors > 0  # the replayed minibatches went to the learner's device
        assert learner.act(np.zeros(4)) in (0, 1)


def test_bc_trains_on_its_device(fake_cuda):
    from rlhf_gym.learners.bc import train_bc

    obs = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    fit = train_bc(obs, (obs[:, 0] > 0).astype(int), discrete=True, n_actions=2, device=resolve_device("auto"))
    assert fake_cuda.modules == ["MLP"]  # the data follows the network's device
    assert fit.policy()(obs[0]) in (0, 1)


# -- every job -----------------------------------------------------------------------------------------------
def _job(kind: str, out: str, device: str) -> TrainConfig:
    base = dict(env="CartPole-v1", out=out, eval_episodes=1, progress=False, device=device, seed=0)
    if kind == "evaluative":
        return TrainConfig(feedback="evaluative", learner="tamer", teacher="random", budget=6,
                           extra={"warmup_steps": 50}, **base)
    if kind == "preference":
        return TrainConfig(feedback="preference", teacher="oracle", budget=4, timesteps=256,
                           extra={"n_envs": 2, "eval_points": 1, "round_eval_episodes": 1, "query_episodes": 2}, **base)
    if kind in ("bc", "dagger"):
        return TrainConfig(feedback="demonstration", learner=kind, teacher="random", budget=2 if kind == "bc" else 6,
                           extra={"bc_max_epochs": 3, "rounds": 2, "max_steps": 30}, **base)
    if kind in ("gail", "airl"):
        return TrainConfig(feedback="demonstration", learner=kind, teacher="random", budget=2, timesteps=512,
                           extra={"max_steps": 30}, **base)
    assert kind.startswith("tradeoff")  # "tradeoff": fresh policies only; "tradeoff-finetune": and a fine-tune
    return TrainConfig(**{**base, "env": "deep-sea-treasure-v0"}, feedback="tradeoff", teacher="oracle", budget=3,
                       extra={"teacher_weights": "0.3,0.7", "n_policies": 2, "policy_timesteps": 128,
                              "final_timesteps": 128 if kind.endswith("finetune") else 0, "reference": False,
                              "outcomes_per_policy": 2})


#: what each job must ask to put on the GPU: our modules by class name, and whether SB3 is built there
EXPECTED = {"evaluative": ({"MLP"}, False), "preference": ({"RewardModel"}, True), "bc": ({"MLP"}, False),
            "dagger": ({"MLP"}, False), "gail": ({"GAILDiscriminator"}, True),
            "airl": ({"AIRLDiscriminator"}, True), "tradeoff": (set(), True), "tradeoff-finetune": (set(), True)}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_every_job_honours_cpu_and_records_it(tmp_path, kind):
    if kind.startswith("tradeoff"):
        pytest.importorskip("mo_gymnasium")
    from rlhf_gym.pipeline import train

    res = train(_job(kind, str(tmp_path / "r"), "cpu"))
    assert res["device"] == "cpu"
    assert json.loads((tmp_path / "r" / "config.json").read_text())["resolved_device"] == "cpu"


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_every_job_given_auto_on_a_gpu_machine_puts_its_models_there(tmp_path, kind, fake_cuda):
    if kind.startswith("tradeoff"):
        pytest.importorskip("mo_gymnasium")
    from rlhf_gym.pipeline import train

    res = train(_job(kind, str(tmp_path / "r"), "auto"))
    assert res["device"] == "cuda"
    assert json.loads((tmp_path / "r" / "config.json").read_text())["resolved_device"] == "cuda"
    modules, sb3 = EXPECTED[kind]
    assert modules <= set(fake_cuda.modules), fake_cuda.modules
    if sb3:
        assert "cuda" in fake_cuda.sb3, fake_cuda.sb3
    # SB3 models loaded to be trained further go to the GPU; those loaded only to act stay on the CPU
    assert ("cuda" in fake_cuda.sb3_loads) == (kind == "tradeoff-finetune"), fake_cuda.sb3_loads
