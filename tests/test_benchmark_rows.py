"""The benchmark scripts' rows are configurations the run jobs accept (no run is made).

A benchmark is run by hand, for minutes to hours; a row whose settings a job refuses, or a script calling
a helper that was renamed, is found only then. Here every row of the sweep-based benchmarks is built into
its jobs and each job's config goes through the job's own checks (with the training itself replaced).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import fields
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("name", ["preference", "robotics_games"])
def test_every_row_is_a_config_its_job_accepts(name, tmp_path, monkeypatch):
    from rlhf_gym.config import check_settings
    from rlhf_gym.jobs import preference as pref_job
    from rlhf_gym.learners.preference import PreferenceSettings
    from rlhf_gym.sweep import check_env_id

    mod = _script(name)
    P = _script("preference")
    rows = mod.rows()
    assert len({r.name for r in rows}) == len(rows), "row names must be unique"
    sweep = P.build_sweep(rows, 1, tmp_path, name=name)
    trained = []
    monkeypatch.setattr(pref_job, "_train_preference", lambda cfg: trained.append(cfg) or {})
    for env in sorted({r.env for r in rows}):
        check_env_id(env)  # every task builds (the extras CI installs)
    for job in sweep.jobs():
        cfg = job.train_config()
        if job.job == "true-reward":
            cfg.validate()
            check_settings(cfg.extra, tuple(f.name for f in fields(PreferenceSettings)), "job true-reward")
            assert cfg.algo in ("auto", "ppo", "sac")
        else:
            pref_job.train_preference(cfg)  # the job's own checks, then the (replaced) training
    assert len(trained) == sum(1 for r in rows if r.kind != "baseline")
    assert {c.env for c in trained} <= {r.env for r in rows}


def test_robotics_rows_keep_their_algo_and_steps(tmp_path):
    """A baseline row's algorithm (PPO on a continuous task) reaches its job; steps are per row."""
    mod = _script("robotics_games")
    P = _script("preference")
    sweep = P.build_sweep(mod.rows(), 1, tmp_path, name="robotics_games")
    cfgs = {j.row: j.config for j in sweep.jobs()}
    assert cfgs["invpend-ppo-true-reward"]["algo"] == "ppo"
    assert cfgs["minatar-breakout-ppo-true-reward"]["timesteps"] == cfgs["minatar-breakout-oracle-200"]["timesteps"]


@pytest.mark.parametrize("name,rows", [("preference", "cartpole-oracle-20,cartpole-random-teacher,"
                                                      "cartpole-sb3-true-reward"),
                                       ("robotics_games", "minatar-breakout-oracle-200,minatar-breakout-random-200,"
                                                          "minatar-breakout-ppo-true-reward")])
def test_the_script_runs_end_to_end_on_stub_runs(name, rows, tmp_path, monkeypatch, capsys):
    """The script's own code (sweep, summary, tables, JSON) on runs replaced by stubs that return at once."""
    import json

    from rlhf_gym.jobs import preference as pref_job
    from rlhf_gym.sweep import baselines

    monkeypatch.setattr(pref_job, "_train_preference", lambda cfg: {
        "mean_return": 10.0 + cfg.seed, "eval_s": 0.1, "wall_s": 1.0, "sb3_s": 0.5, "heldout_accuracy": 0.9,
        "heldout_pairs": 4, "feedback_used": cfg.budget})
    monkeypatch.setattr(baselines, "true_reward", lambda cfg: {"mean_return": 20.0, "learn_s": 0.5, "wall_s": 0.6})
    mod = _script(name)
    out = tmp_path / "result.json"
    assert mod.main(["--rows", rows, "--seeds", "2", "--serial", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["row"] for r in doc["rows"]] == rows.split(",")
    assert all(r["n"] == 2 for r in doc["rows"])
    headline = doc["rows"][0]
    assert headline["time_ratio_median"] == pytest.approx((1.0 - 0.1) / 0.5)
    printed = capsys.readouterr().out
    assert rows.split(",")[0] in printed
    if name == "robotics_games":
        assert "| minatar-breakout-oracle-200 | 10.50 | 20.00 | 0.53 |" in printed  # share of SB3's return
