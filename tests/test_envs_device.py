"""``--device auto|cpu|cuda``: validated, resolved (auto -> a GPU only when there is one), handed to SB3."""

from __future__ import annotations

import pytest
import torch

from rlhf_gym.cli import main
from rlhf_gym.config import TrainConfig
from rlhf_gym.devices import resolve_device


def test_device_choices_are_validated_and_resolved(monkeypatch):
    assert TrainConfig(device="cpu").validate().device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert TrainConfig(device="cuda:1").validate().device == "cuda:1"  # checked when the config is validated
    with pytest.raises(ValueError, match="--device must be"):
        TrainConfig(device="tpu").validate()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda"
    with pytest.raises(ValueError, match="only 1 CUDA"):
        resolve_device("cuda:3")


def test_cli_rejects_a_bad_device_with_exit_code_2(tmp_path, capsys):
    assert main(["train", "--env", "CartPole-v1", "--device", "gpu0", "--out", str(tmp_path)]) == 2
    assert "--device must be" in capsys.readouterr().err


def test_the_preference_job_puts_sb3_on_the_chosen_device(tmp_path, monkeypatch):
    from rlhf_gym.learners import preference

    seen = {}
    real = preference.make_algo

    def spy(*args, **kwargs):
        algo = real(*args, **kwargs)
        seen["device"] = str(algo.device)
        return algo

    monkeypatch.setattr("rlhf_gym.jobs.preference.make_algo", spy)
    from rlhf_gym.pipeline import train

    train(TrainConfig(env="CartPole-v1", feedback="preference", teacher="oracle", budget=4, timesteps=512,
                      eval_episodes=1, device="cpu", out=str(tmp_path / "r"), progress=False,
                      extra={"n_envs": 2, "eval_points": 1, "round_eval_episodes": 1, "query_episodes": 2}))
    assert seen["device"] == "cpu"
