"""Benchmark: preference-based RL with simulated teachers, with controls and a wall-clock baseline.

Rows: CartPole-v1 and Pendulum-v1 with an oracle teacher (headline), controls (a teacher answering
at random, zero labels), SB3 on the true reward for the same environment steps (wall-clock
baseline, measured in the same run), robustness teachers, and MountainCarContinuous with 200 labels.
Each row runs seeds one after another in this process (one torch thread); the JSON is rewritten
after every run, so a run cut short by ``--deadline`` still leaves every finished row.

    PYTHONPATH=src python benchmarks/preference.py                 # everything that fits
    PYTHONPATH=src python benchmarks/preference.py --rows cartpole-oracle,cartpole-random --seeds 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhf_gym.config import TrainConfig
from rlhf_gym.jobs.preference import train_preference
from rlhf_gym.learners.preference import default_timesteps, make_algo

RESULTS = Path(__file__).parent / "results" / "preference.json"


@dataclass
class Row:
    name: str
    env: str
    teacher: str
    budget: int
    timesteps: int
    threshold: float
    kind: str = "preference"  # preference | baseline
    extra: dict[str, Any] = field(default_factory=dict)
    noise: float = 0.1
    role: str = "headline"


def rows() -> list[Row]:
    # the loop's defaults: 100k, 20k, 40k, 200k steps
    cp, pd, mc = default_timesteps("ppo", 500), default_timesteps("sac", 200), default_timesteps("ppo", 200)
    ll = default_timesteps("ppo", 1000)
    return [
        Row("cartpole-oracle-20", "CartPole-v1", "oracle", 20, cp, 475),
        Row("cartpole-random-teacher", "CartPole-v1", "random", 20, cp, 475, role="control"),
        Row("cartpole-zero-labels", "CartPole-v1", "oracle", 0, cp, 475, role="control"),
        Row("cartpole-sb3-true-reward", "CartPole-v1", "-", 0, cp, 475, kind="baseline", role="baseline"),
        Row("pendulum-oracle-20", "Pendulum-v1", "oracle", 20, pd, -200),
        Row("pendulum-random-teacher", "Pendulum-v1", "random", 20, pd, -200, role="control"),
        Row("pendulum-zero-labels", "Pendulum-v1", "oracle", 0, pd, -200, role="control"),
        Row("pendulum-sb3-true-reward", "Pendulum-v1", "-", 0, pd, -200, kind="baseline", role="baseline"),
        Row("cartpole-oracle-50", "CartPole-v1", "oracle", 50, cp, 475),
        Row("pendulum-oracle-50", "Pendulum-v1", "oracle", 50, pd, -200),
        Row("cartpole-mistake0.1", "CartPole-v1", "mistake", 20, cp, 475, role="robustness"),
        Row("cartpole-stochastic", "CartPole-v1", "stochastic", 20, cp, 475, role="robustness"),
        Row("cartpole-skip", "CartPole-v1", "skip", 20, cp, 475, role="robustness"),
        Row("cartpole-equal", "CartPole-v1", "equal", 20, cp, 475, role="robustness"),
        Row("pendulum-mistake0.1", "Pendulum-v1", "mistake", 20, pd, -200, role="robustness"),
        Row("pendulum-stochastic", "Pendulum-v1", "stochastic", 20, pd, -200, role="robustness"),
        Row("pendulum-skip", "Pendulum-v1", "skip", 20, pd, -200, role="robustness"),
        Row("pendulum-equal", "Pendulum-v1", "equal", 20, pd, -200, role="robustness"),
        Row("mountaincar-oracle-200", "MountainCar-v0", "oracle", 200, mc, -110, role="report"),
        Row("mountaincar-explore-oracle-200", "MountainCar-v0", "oracle", 200, mc, -110, role="report",
            extra={"unsup_frac": 0.2}),
        Row("mountaincar-sb3-true-reward", "MountainCar-v0", "-", 0, mc, -110, kind="baseline", role="baseline"),
        Row("lunarlander-oracle-200", "LunarLander-v3", "oracle", 200, ll, 200, role="report"),
        Row("lunarlander-random-teacher-200", "LunarLander-v3", "random", 200, ll, 200, role="control"),
        Row("lunarlander-sb3-true-reward", "LunarLander-v3", "-", 0, ll, 200, kind="baseline", role="baseline"),
        Row("mountaincarcont-oracle-200", "MountainCarContinuous-v0", "oracle", 200,
            default_timesteps("sac", 999), 90, role="report"),
    ]


def run_baseline(row: Row, seed: int) -> dict[str, Any]:
    """SB3 with the same algorithm and settings on the true reward, for the same environment steps."""
    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_gym.envs import make_env, spec_of
    from rlhf_gym.rollouts import rollout

    probe = make_env(row.env)
    discrete = spec_of(probe).discrete
    probe.close()
    algo_name = "ppo" if discrete else "sac"
    t0 = time.time()
    venv = make_vec_env(row.env, n_envs=8 if algo_name == "ppo" else 1, seed=seed)
    algo = make_algo(algo_name, venv, seed, row.timesteps)
    algo.learn(total_timesteps=row.timesteps)
    wall = time.time() - t0
    env = make_env(row.env)
    rets = []
    for i in range(20):
        def pol(o: np.ndarray) -> Any:
            a = algo.predict(o, deterministic=True)[0]
            return int(a) if discrete else a
        rets.append(rollout(env, pol, seed=10_000 + i).ret)
    env.close()
    return {"final_return": float(np.mean(rets)), "loop_s": wall, "labels": 0}


def run_one(row: Row, seed: int, workdir: Path) -> dict[str, Any]:
    if row.kind == "baseline":
        return run_baseline(row, seed)
    cfg = TrainConfig(env=row.env, feedback="preference", teacher=row.teacher, budget=row.budget, seed=seed,
                      out=str(workdir / f"{row.name}-{seed}"), timesteps=row.timesteps, progress=False,
                      noise=row.noise, extra={"threshold": row.threshold, "eval_points": 5, **row.extra})
    r = train_preference(cfg)
    fs = r.get("first_solved")
    return {"final_return": r["mean_return"], "labels": r["feedback_used"],
            "labels_to_threshold": fs["labels"] if fs else None, "steps_to_threshold": fs["step"] if fs else None,
            "heldout_accuracy": r["heldout_accuracy"], "inverted_rounds": r["inverted_rounds"],
            "loop_s": r["wall_s"] - r["eval_s"], "eval_s": r["eval_s"], "reward_train_s": r["reward_train_s"],
            "sb3_s": r["sb3_s"], "reward_inference_s": r["reward_inference_s"]}


def summarise(name: str, row: Row, runs: list[dict[str, Any]], baseline: dict[int, float]) -> dict[str, Any]:
    fin = np.array([r["final_return"] for r in runs])
    acc = [r["heldout_accuracy"] for r in runs if r.get("heldout_accuracy") is not None]
    ratios = [r["loop_s"] / baseline[s] for s, r in zip(row_seeds(runs), runs, strict=True) if s in baseline]
    # load-robust: the loop against the SB3 part of the same process (learn() minus our callback and reward calls)
    inproc = [r["loop_s"] / r["sb3_s"] for r in runs if r.get("sb3_s")]
    l2t = [r["labels_to_threshold"] for r in runs if r.get("labels_to_threshold") is not None]
    return {
        "row": name, "env": row.env, "teacher": row.teacher, "budget": row.budget, "timesteps": row.timesteps,
        "role": row.role, "seeds": len(runs), "threshold": row.threshold,
        "solved": int((fin >= row.threshold).sum()),
        "final_median": float(np.median(fin)), "final_min": float(fin.min()), "final_max": float(fin.max()),
        "labels_to_threshold_median": float(np.median(l2t)) if l2t else None,
        "heldout_acc_median": float(np.median(acc)) if acc else None,
        "time_ratio_median": float(np.median(ratios)) if ratios else None,
        "overhead_ratio_median": float(np.median(inproc)) if inproc else None,
        "runs": runs,
    }


def row_seeds(runs: list[dict[str, Any]]) -> list[int]:
    return [r["seed"] for r in runs]


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def print_table(summary: list[dict[str, Any]]) -> None:
    head = ["row", "role", "labels", "seeds", "solved", "final median [min, max]", "labels->thr", "held-out acc",
            "time / SB3", "time / own SB3 part"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in summary:
        print(f"| {s['row']} | {s['role']} | {s['budget']} | {s['seeds']} | {s['solved']}/{s['seeds']} | "
              f"{fmt(s['final_median'])} [{fmt(s['final_min'])}, {fmt(s['final_max'])}] | "
              f"{fmt(s['labels_to_threshold_median'], 0)} | {fmt(s['heldout_acc_median'], 2)} | "
              f"{fmt(s['time_ratio_median'], 2)} | {fmt(s.get('overhead_ratio_median'), 2)} |")


def git_commit() -> str:
    """The commit the benchmark runs (with ``+dirty`` for uncommitted changes), recorded with each run."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="", help="comma-separated row names (default: all, in order)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--deadline", type=float, default=None, help="unix time after which no new run starts")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--resume", action="store_true", help="keep rows/seeds already in --out")
    p.add_argument("--merge", nargs="*", default=[],
                   help="result files of runs made in parallel: their rows are copied into --out (run nothing new "
                        "unless --rows is given); each environment's rows and baseline should come from one file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    all_rows = rows()
    wanted = [r for r in all_rows if not args.rows or r.name in args.rows.split(",")]
    out = Path(args.out)
    done: dict[str, list[dict[str, Any]]] = {}
    if args.resume and out.exists():
        for s in json.loads(out.read_text()).get("rows", []):
            done[s["row"]] = s["runs"]
    merged_from = []
    for extra_file in args.merge:
        part = json.loads(Path(extra_file).read_text())
        merged_from.append({"file": str(extra_file), "command": part.get("command"),
                            "rows": [s["row"] for s in part.get("rows", [])]})
        for s in part.get("rows", []):
            done[s["row"]] = s["runs"]
    if args.merge and not args.rows:
        wanted = []
    commit = git_commit()
    workdir = Path(tempfile.mkdtemp(prefix="pref-bench-"))
    skipped: list[str] = []

    def write() -> list[dict[str, Any]]:
        base: dict[str, dict[int, float]] = {}
        for r in all_rows:
            if r.kind == "baseline" and r.name in done:
                base[r.env] = {x["seed"]: x["loop_s"] for x in done[r.name]}
        summary = [summarise(r.name, r, done[r.name], base.get(r.env, {})) for r in all_rows
                   if r.name in done and done[r.name]]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "command": "PYTHONPATH=src python benchmarks/preference.py " + " ".join(sys.argv[1:]),
            "machine": "2 shared CPU cores, 1 torch thread per process",
            "time_ratio": "whole loop wall-clock (minus evaluation of the policy) / SB3 on the true reward, same "
                          "algorithm, settings and env steps, same seed, measured in this run",
            "overhead_ratio": "the same loop wall-clock / the time SB3's learn() spent outside our callback and reward "
                              "calls in the same process (insensitive to other jobs loading the machine)",
            "merged_from": merged_from,
            "not_run": skipped, "rows_not_run": [r.name for r in all_rows if not done.get(r.name)],
            "rows": summary}, indent=2, default=float) + "\n")
        return summary

    # seed-major: each seed of every row (baseline included) runs close in time to the others, so the
    # time ratios compare runs made under the same machine load
    for seed in range(args.seeds):
        for row in wanted:
            if any(r["seed"] == seed for r in done.get(row.name, [])):
                continue
            if args.deadline and time.time() > args.deadline:
                skipped.append(f"{row.name} seed {seed}")
                continue
            t0 = time.time()
            try:
                res = run_one(row, seed, workdir)
            except Exception as e:  # a crash is a result too: record it, go on with the next run
                print(f"{row.name} seed {seed}: FAILED {type(e).__name__}: {e}", flush=True)
                skipped.append(f"{row.name} seed {seed}: failed {type(e).__name__}: {e}")
                continue
            res["seed"] = seed
            res["wall_s"] = time.time() - t0
            res["commit"] = commit
            done.setdefault(row.name, []).append(res)
            print(f"{row.name} seed {seed}: final {res['final_return']:.1f}, labels {res.get('labels')}, "
                  f"{res['wall_s']:.0f}s", flush=True)
            write()
    summary = write()
    shutil.rmtree(workdir, ignore_errors=True)
    print_table(summary)
    if skipped:
        print(f"not run before the deadline: {len(skipped)} row-seeds (listed in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
