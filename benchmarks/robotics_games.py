"""Benchmark: robotics (MuJoCo) and pixel games (MinAtar, Atari) from simulated preferences, with controls.

Rows (3 seeds by default): each task's preference row, a random-teacher control with the same labels and
steps, and SB3 on the true reward with the same algorithm, defaults and environment steps (the baseline),
all measured in the same run. Environment steps are stated per row (``timesteps``); they are the only
number that differs between tasks, and they are recorded in the JSON.

    PYTHONPATH=src python benchmarks/robotics_games.py --rows invpend-oracle-20,invpend-random-20,invpend-sac-true-reward
    PYTHONPATH=src python benchmarks/robotics_games.py --rows minatar-breakout-oracle-200 --seeds 3   # GPU / long

What a 2-core shared CPU machine can run is the InvertedPendulum rows at 20k steps; the MinAtar rows
(500k steps each) and the Hopper / Pong full-length runs are listed with their expected cost and run
when a bigger machine is available (``--device auto`` puts SB3 on a GPU when there is one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import preference as P  # noqa: E402  (the preference benchmark's rows, runner, summary and table)

from rlhf_gym.learners.preference import make_algo  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "robotics_games.json"


def rows() -> list[P.Row]:
    ip, mb = 20_000, 500_000
    return [
        P.Row("invpend-oracle-20", "InvertedPendulum-v5", "oracle", 20, ip, 950),
        P.Row("invpend-random-20", "InvertedPendulum-v5", "random", 20, ip, 950, role="control"),
        P.Row("invpend-sac-true-reward", "InvertedPendulum-v5", "-", 0, ip, 950, kind="baseline", role="baseline"),
        P.Row("invpend-ppo-true-reward", "InvertedPendulum-v5", "-", 0, ip, 950, kind="baseline", role="report",
              extra={"algo": "ppo"}),
        P.Row("invdoublepend-oracle-100", "InvertedDoublePendulum-v5", "oracle", 100, 100_000, 9000, role="report"),
        P.Row("invdoublepend-sac-true-reward", "InvertedDoublePendulum-v5", "-", 0, 100_000, 9000, kind="baseline",
              role="baseline"),
        P.Row("reacher-oracle-100", "Reacher-v5", "oracle", 100, 50_000, -5, role="report"),
        P.Row("reacher-sac-true-reward", "Reacher-v5", "-", 0, 50_000, -5, kind="baseline", role="baseline"),
        P.Row("minatar-breakout-oracle-200", "MinAtar/Breakout-v1", "oracle", 200, mb, 0, role="headline"),
        P.Row("minatar-breakout-random-200", "MinAtar/Breakout-v1", "random", 200, mb, 0, role="control"),
        P.Row("minatar-breakout-ppo-true-reward", "MinAtar/Breakout-v1", "-", 0, mb, 0, kind="baseline",
              role="baseline"),
    ]


def run_baseline(row: P.Row, seed: int) -> dict[str, Any]:
    """SB3 (the loop's algorithm and defaults) on the true reward, environments made by ``make_env`` (pixel
    preprocessing included), for the row's steps; greedy return over 20 held-out seeds."""
    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_gym.envs import make_env, spec_of
    from rlhf_gym.rollouts import rollout_batch

    probe = make_env(row.env)
    discrete = spec_of(probe).discrete
    probe.close()
    algo_name = row.extra.get("algo") or ("ppo" if discrete else "sac")
    t0 = time.time()
    venv = make_vec_env(lambda: make_env(row.env), n_envs=8 if algo_name == "ppo" else 1, seed=seed)
    algo = make_algo(algo_name, venv, seed, row.timesteps, device="cpu")
    algo.learn(total_timesteps=row.timesteps)
    wall = time.time() - t0
    envs = [make_env(row.env) for _ in range(20)]
    trajs = rollout_batch(envs, lambda o: algo.predict(o, deterministic=True)[0], [10_000 + i for i in range(20)])
    for e in envs:
        e.close()
    return {"final_return": float(np.mean([t.ret for t in trajs])), "loop_s": wall, "labels": 0, "sb3_s": wall}


def run_one(row: P.Row, seed: int, workdir: Path) -> dict[str, Any]:
    if row.kind == "baseline":
        return run_baseline(row, seed)
    return P.run_one(row, seed, workdir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="", help="comma-separated row names (default: all, in order)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--deadline", type=float, default=None, help="unix time after which no new run starts")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--resume", action="store_true", help="keep rows/seeds already in --out")
    p.add_argument("--first-seed", type=int, default=0, help="run seeds first_seed .. first_seed + seeds - 1")
    p.add_argument("--merge", nargs="*", default=[], help="result files of runs made in parallel (other seeds): "
                                                            "their runs are added to --out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    all_rows = rows()
    wanted = [r for r in all_rows if not args.rows or r.name in args.rows.split(",")]
    out = Path(args.out)
    done: dict[str, list[dict[str, Any]]] = {}
    if args.resume and out.exists():
        for s in json.loads(out.read_text()).get("rows", []):
            done[s["row"]] = s["runs"]
    for extra_file in args.merge:
        for s in json.loads(Path(extra_file).read_text()).get("rows", []):
            have = {r["seed"] for r in done.get(s["row"], [])}
            done.setdefault(s["row"], []).extend(r for r in s["runs"] if r["seed"] not in have)
    for runs in done.values():
        runs.sort(key=lambda r: r["seed"])
    if args.merge and not args.rows:
        wanted = []  # only combine the files
    commit = P.git_commit()
    workdir = Path(tempfile.mkdtemp(prefix="robotics-games-bench-"))
    skipped: list[str] = []

    def write() -> list[dict[str, Any]]:
        base: dict[str, dict[int, float]] = {}
        for r in all_rows:
            if r.kind == "baseline" and r.role == "baseline" and r.name in done:
                base[r.env] = {x["seed"]: x["loop_s"] for x in done[r.name]}
        summary = [P.summarise(r.name, r, done[r.name], base.get(r.env, {})) for r in all_rows if done.get(r.name)]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "command": "PYTHONPATH=src python benchmarks/robotics_games.py " + " ".join(sys.argv[1:]),
            "machine": "2 shared CPU cores (other jobs running), 1 torch thread per process, --device cpu",
            "seeds_requested": args.seeds, "merged_from": args.merge,
            "not_run": skipped, "rows_not_run": [r.name for r in all_rows if not done.get(r.name)],
            "rows": summary}, indent=2, default=float) + "\n")
        return summary

    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for row in wanted:
            if any(r["seed"] == seed for r in done.get(row.name, [])):
                continue
            if args.deadline and time.time() > args.deadline:
                skipped.append(f"{row.name} seed {seed}")
                continue
            t0 = time.time()
            try:
                res = run_one(row, seed, workdir)
            except Exception as e:  # a crash is a result too
                print(f"{row.name} seed {seed}: FAILED {type(e).__name__}: {e}", flush=True)
                skipped.append(f"{row.name} seed {seed}: failed {type(e).__name__}: {e}")
                continue
            res.update(seed=seed, wall_s=time.time() - t0, commit=commit)
            done.setdefault(row.name, []).append(res)
            print(f"{row.name} seed {seed}: final {res['final_return']:.1f}, labels {res.get('labels')}, "
                  f"{res['wall_s']:.0f}s", flush=True)
            write()
    summary = write()
    shutil.rmtree(workdir, ignore_errors=True)
    P.print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
