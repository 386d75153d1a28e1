"""rlhf-gym sweep: spec parsing, the results table, and Ray giving the same numbers as a sequential run."""

from __future__ import annotations

import json

import pytest

from rlhf_gym.cli import main
from rlhf_gym.sweep import load_spec, parse_spec, run_sweep, table

TINY = """
seeds = 2
control = {teacher = "random"}
[base]
feedback = "evaluative"
learner = "tamer"
budget = 10
eval_episodes = 3
[grid]
teacher = ["oracle", "random"]
"""

#: result keys that differ between two identical runs (timings, paths, ids minted from the clock)
VOLATILE = {"policy", "run_id", "model_id", "model_ids"}


def stable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in VOLATILE and not k.endswith("_s")}


def test_grid_rows_seeds_and_controls(tmp_path):
    sw = parse_spec({
        "seeds": [3, 4], "control": {"teacher": "random"},
        "base": {"feedback": "preference", "timesteps": 2000, "set": {"eval_points": 2}},
        "grid": {"env": ["CartPole-v1", "Pendulum-v1"], "teacher": ["oracle", "random"], "budget": [10]},
        "rows": [{"name": "zero", "env": "CartPole-v1", "budget": 0, "role": "control", "set": {"rounds": 2}}],
    }, default_out=str(tmp_path))
    names = [r.name for r in sw.rows]
    assert names == ["CartPole-v1/oracle", "CartPole-v1/random", "Pendulum-v1/oracle", "Pendulum-v1/random", "zero"]
    jobs = sw.jobs()
    assert len(jobs) == 10 and [j.seed for j in jobs[:5]] == [3] * 5
    j = jobs[0]
    assert j.config["threads"] == 1 and j.config["progress"] is False and j.config["timesteps"] == 2000
    assert j.config["extra"] == {"eval_points": 2}
    assert jobs[4].config["extra"] == {"eval_points": 2, "rounds": 2} and jobs[4].config["budget"] == 0
    rows = {r.name: r for r in sw.rows}
    assert sw.control_of(rows["Pendulum-v1/oracle"]).name == "Pendulum-v1/random"
    assert rows["CartPole-v1/random"].role == "control" and sw.control_of(rows["CartPole-v1/random"]) is None
    assert rows["CartPole-v1/oracle"].threshold == 475.0 and rows["Pendulum-v1/oracle"].threshold is None


@pytest.mark.parametrize("raw, words", [
    ({"grid": {"teacher": ["oracle"]}, "bogus": 1}, "bogus"),
    ({"grid": {"teachr": ["oracle"]}}, "teachr"),
    ({"grid": {"teacher": "oracle"}}, "non-empty list"),
    ({"grid": {"teacher": ["oracle", "nobody"]}}, "nobody"),
    ({"rows": [{"name": "a"}, {"name": "a"}]}, "unique"),
    ({"rows": [{"name": "a", "control": "b"}]}, "not a row"),
    ({"grid": {"budget": [-1]}}, "--budget"),
    ({}, "no runs"),
    ({"grid": {"budget": [5]}, "seeds": 0}, "seeds"),
])
def test_bad_specs_are_refused_with_a_reason(raw, words):
    with pytest.raises(ValueError, match=words):
        parse_spec(raw)


def test_cli_bad_spec_exits_2(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text("[grid]\nteacher = [\"oracle\"]\nfeedbak = 1\n")
    assert main(["sweep", str(spec), "--serial"]) == 2
    assert "feedbak" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    (tmp_path / "s.txt").write_text("x")
    assert main(["sweep", str(tmp_path / "s.txt")]) == 2


def test_yaml_spec_and_dry_run(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("seeds: [0, 1, 2]\nbase: {feedback: evaluative, budget: 5}\ngrid:\n  learner: [tamer, coach]\n")
    sw = load_spec(spec)
    assert [r.name for r in sw.rows] == ["tamer", "coach"] and len(sw.jobs()) == 6
    assert main(["sweep", str(spec), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    assert "6 run(s)" in capsys.readouterr().out


def test_ray_sweep_gives_the_sequential_numbers(tmp_path):
    pytest.importorskip("ray")
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    serial = run_sweep(load_spec(spec, out=tmp_path / "serial"), serial=True, log=None)
    ray_doc = run_sweep(load_spec(spec, out=tmp_path / "ray"), cpus=2, log=None)
    assert ray_doc["complete"] and ray_doc["engine"].startswith("ray")
    assert len(serial["runs"]) == len(ray_doc["runs"]) == 4
    assert not [r for r in ray_doc["runs"] if "error" in r]
    for a, b in zip(serial["runs"], ray_doc["runs"], strict=True):
        assert (a["row"], a["seed"]) == (b["row"], b["seed"])
        assert stable(a["result"]) == stable(b["result"])
    # the two seeds and two teachers really differ, so equality above is not a constant
    rets = {(r["row"], r["seed"]): r["result"]["mean_return"] for r in serial["runs"]}
    assert len(set(rets.values())) == 4
    by = {r["row"]: r for r in ray_doc["rows"]}
    assert by["oracle"]["control"] == "random" and "vs_control" in by["oracle"]
    assert by["oracle"]["scores"] == [rets[("oracle", 0)], rets[("oracle", 1)]]
    saved = json.loads((tmp_path / "ray" / "sweep.json").read_text())
    assert saved["rows"] == ray_doc["rows"]


def test_failed_runs_are_recorded_and_resume_skips_done_runs(tmp_path, monkeypatch):
    import rlhf_gym.sweep as sweep_mod

    sw = parse_spec({"seeds": 2, "base": {"feedback": "evaluative", "budget": 5}, "grid": {"learner": ["tamer"]}},
                    out=tmp_path / "o")
    calls = []

    def fake_train(cfg):
        calls.append(cfg.seed)
        if cfg.seed == 1:
            raise RuntimeError("boom")
        return {"mean_return": 10.0 + cfg.seed, "feedback_used": 5}

    monkeypatch.setattr("rlhf_gym.pipeline.train", fake_train)
    doc = run_sweep(sw, serial=True, log=None)
    errs = [r for r in doc["runs"] if "error" in r]
    assert len(errs) == 1 and "boom" in errs[0]["error"] and doc["rows"][0]["failed"] == [1]
    doc = run_sweep(sw, serial=True, resume=True, log=None)
    assert calls == [0, 1, 1]  # seed 0 kept from the first sweep, seed 1 tried again
    assert table(sw, doc["runs"])[0]["scores"] == [10.0]
    assert sweep_mod.format_table(doc["rows"]).count("\n") == 2


def test_true_reward_baseline_row(tmp_path, capsys):
    sw = parse_spec({"seeds": 1, "rows": [
        {"name": "sb3", "job": "true-reward", "env": "CartPole-v1", "timesteps": 256, "eval_episodes": 3}]},
        out=tmp_path / "o")
    doc = run_sweep(sw, serial=True, log=None)
    res = doc["runs"][0]["result"]
    assert res["feedback_used"] == 0 and res["algo"] == "ppo" and res["timesteps"] == 256
    run_dir = tmp_path / "o" / "sb3" / "seed0"
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", "3", "--seed", "10000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_return"] == pytest.approx(res["mean_return"])
    with pytest.raises(ValueError, match="job must be one of"):
        parse_spec({"rows": [{"name": "x", "job": "nope"}]})


def test_true_reward_baseline_builds_its_env_with_make_env(tmp_path):
    """The baseline must see the loop's environment (entry points, old-API classes, pixel preprocessing)."""
    from pathlib import Path

    env_id = f"{Path(__file__).parent.parent / 'examples' / 'old_gym_tutorial.py'}:CartPoleEnv"
    sw = parse_spec({"seeds": 1, "rows": [
        {"name": "sb3", "job": "true-reward", "env": env_id, "timesteps": 256, "eval_episodes": 2}]},
        out=tmp_path / "o")
    doc = run_sweep(sw, serial=True, log=None)
    assert doc["runs"][0].get("error") is None, doc["runs"][0].get("error")
    assert doc["runs"][0]["result"]["timesteps"] == 256


def _square(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x * x


def test_map_tasks_serial_keeps_order_and_reports_errors():
    from rlhf_gym.sweep import map_tasks

    seen = []
    out = map_tasks(_square, [3, -1, 2], serial=True, on_done=seen.append, on_error=lambda x, e: f"{x}: {e}")
    assert out == [9, "-1: negative", 4] and seen == out
    with pytest.raises(ValueError):
        map_tasks(_square, [-2], serial=True)
