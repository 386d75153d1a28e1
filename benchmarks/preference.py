"""Benchmark: preference-based RL with simulated teachers, with controls and a wall-clock baseline.

Rows: CartPole-v1 and Pendulum-v1 with an oracle teacher (headline), controls (a teacher answering
at random, zero labels: the same anchored, untrained reward model), SB3 on the true reward for the
same environment steps (return and wall-clock baseline, measured in the same sweep), robustness
teachers, MountainCar-v0, LunarLander-v3 and MountainCarContinuous with 200 labels.

Every row, controls and baselines included, runs the same seeds (5 by default) through
:mod:`rlhf_gym.sweep` (Ray tasks, one CPU and one torch thread each; ``--serial`` without Ray,
``--address`` for a cluster). The table reports the IQM and median with 95% stratified-bootstrap
intervals and the seeds solved with a Wilson interval (:mod:`rlhf_gym.stats`); a headline row
counts only where its intervals clear its control's (the random teacher of the same task).

    PYTHONPATH=src python benchmarks/preference.py                 # every row, 5 seeds
    PYTHONPATH=src python benchmarks/preference.py --rows cartpole-oracle-20,cartpole-random-teacher --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_gym import stats
from rlhf_gym.learners.preference import default_timesteps
from rlhf_gym.sweep import Row as SweepRow
from rlhf_gym.sweep import Sweep, format_table, run_sweep

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
        Row("cartpole-oracle-10", "CartPole-v1", "oracle", 10, cp, 475),
        Row("cartpole-random-teacher-10", "CartPole-v1", "random", 10, cp, 475, role="control"),
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



def control_of(row: Row, names: set[str]) -> str | None:
    """The random-teacher row of the same task, at the same budget where there is one (headline and
    robustness rows are compared with it)."""
    if row.role in ("control", "baseline"):
        return None
    prefix = row.name.split("-")[0]
    for cand in (f"{prefix}-random-teacher-{row.budget}", f"{prefix}-random-teacher"):
        if cand in names:
            return cand
    return None


def build_sweep(wanted: list[Row], seeds: int, out: Path, name: str = "preference") -> Sweep:
    """One sweep row per benchmark row; baselines run ``job = true-reward`` (SB3, same steps)."""
    names = {r.name for r in wanted}
    rows = []
    for r in wanted:
        values: dict[str, Any] = {"env": r.env, "timesteps": r.timesteps, "eval_episodes": 20}
        settings: dict[str, Any] = {}
        job = "train"
        if r.kind == "baseline":
            job = "true-reward"
            if "algo" in r.extra:
                values["algo"] = r.extra["algo"]
        else:
            values.update(feedback="preference", teacher=r.teacher, budget=r.budget, noise=r.noise)
            settings = {"threshold": r.threshold, "eval_points": 5, **r.extra}
        rows.append(SweepRow(r.name, values, settings, role=r.role, control=control_of(r, names),
                             threshold=r.threshold, job=job))
    return Sweep(rows, list(range(seeds)), out, name=name)


def summarise(sweep: Sweep, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's table plus what this benchmark adds: labels to threshold, held-out accuracy, time ratios."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in doc["runs"]:
        if "result" in rec:
            runs.setdefault(rec["row"], {})[rec["seed"]] = rec["result"]
    by_env_baseline = {r.values["env"]: runs.get(r.name, {}) for r in sweep.rows if r.job == "true-reward"}
    zero = {r.values["env"]: r.name for r in sweep.rows if r.values.get("budget") == 0}
    lines = []
    for row, line in zip(sweep.rows, doc["rows"], strict=True):
        res = runs.get(row.name, {})
        base = by_env_baseline.get(row.values["env"], {})
        # the whole loop (minus evaluating the policy) against SB3 on the true reward, same seed and steps
        ratios = [(r["wall_s"] - r["eval_s"]) / base[s]["learn_s"] for s, r in res.items()
                  if s in base and "eval_s" in r]
        inproc = [(r["wall_s"] - r["eval_s"]) / r["sb3_s"] for r in res.values() if r.get("sb3_s")]
        l2t = [r["first_solved"]["labels"] for r in res.values() if r.get("first_solved")]
        acc = [r["heldout_accuracy"] for r in res.values() if r.get("heldout_accuracy") is not None]
        line = {**line, "budget": row.values.get("budget", 0), "timesteps": row.values["timesteps"],
                "labels_to_threshold_median": float(np.median(l2t)) if l2t else None,
                "heldout_accuracy_median": float(np.median(acc)) if acc else None,
                "heldout_pairs_median": float(np.median([r["heldout_pairs"] for r in res.values()
                                                         if r.get("heldout_pairs") is not None] or [0])),
                "time_ratio_median": float(np.median(ratios)) if ratios else None,
                "overhead_ratio_median": float(np.median(inproc)) if inproc else None}
        z = zero.get(row.values["env"])
        if row.role not in ("control", "baseline") and z and z != row.name and "iqm" in line:
            zl = next((x for x in doc["rows"] if x["row"] == z and "iqm" in x), None)
            if zl is not None:
                line["vs_zero_labels"] = stats.compare(_summary(line), _summary(zl))
        lines.append(line)
    return lines


def _summary(line: dict[str, Any]) -> stats.Summary:
    return stats.Summary(n=line["n"], mean=line["mean"], iqm=line["iqm"], iqm_ci=tuple(line["iqm_ci"]),
                         median=line["median"], median_ci=tuple(line["median_ci"]), min=line["min"],
                         max=line["max"], threshold=line.get("threshold"), solved=line.get("solved"),
                         solved_share=line.get("solved_share"),
                         solved_ci=tuple(line["solved_ci"]) if line.get("solved_ci") else None)


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def print_extra(summary: list[dict[str, Any]]) -> None:
    head = ["row", "labels", "labels->thr", "held-out acc (pairs)", "vs zero labels", "time / SB3",
            "time / own SB3 part"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in summary:
        vz = s.get("vs_zero_labels")
        print(f"| {s['row']} | {s['budget']} | {fmt(s['labels_to_threshold_median'], 0)} | "
              f"{fmt(s['heldout_accuracy_median'], 2)} ({fmt(s['heldout_pairs_median'], 0)}) | "
              f"{'-' if vz is None else ('clears' if vz['counts'] else 'does not clear')} | "
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
    return run_benchmark(argv, rows(), RESULTS, "benchmarks/preference.py", __doc__ or "", "preference")


def run_benchmark(argv: list[str] | None, all_rows: list[Row], results: Path, script: str, doc_text: str,
                  name: str, after: Any = None) -> int:
    """Parse the command line, run the wanted rows as one sweep, write the JSON and print the tables
    (shared with ``benchmarks/robotics_games.py``; ``after(summary)`` prints what a script adds)."""
    p = argparse.ArgumentParser(description=doc_text.splitlines()[0])
    p.add_argument("--rows", default="", help="comma-separated row names (default: all, in order)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 for every row, controls and baselines too")
    p.add_argument("--out", default=str(results))
    p.add_argument("--runs", default=None, help="folder for the run folders and sweep.json (default: next to --out)")
    p.add_argument("--serial", action="store_true", help="run without Ray, one job after another")
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--resume", action="store_true", help="keep finished runs of the same config")
    p.add_argument("--timesteps", type=int, default=None,
                   help="override every row's environment steps (a smoke test of the script, not the benchmark)")
    args = p.parse_args(argv)
    if args.timesteps:
        for r in all_rows:
            r.timesteps = args.timesteps
    wanted = [r for r in all_rows if not args.rows or r.name in args.rows.split(",")]
    unknown = set(args.rows.split(",")) - {r.name for r in all_rows} if args.rows else set()
    if unknown:
        p.error(f"unknown rows: {', '.join(sorted(unknown))}")
    out = Path(args.out)
    runs_dir = Path(args.runs) if args.runs else out.with_suffix("").parent / f"{out.stem}-runs"
    sweep = build_sweep(wanted, args.seeds, runs_dir, name=name)
    commit = git_commit()  # the code the runs use (taken before they start)
    doc = run_sweep(sweep, serial=args.serial, address=args.address, cpus=args.cpus, resume=args.resume)
    summary = summarise(sweep, doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": f"PYTHONPATH=src python {script} " + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": commit, "engine": doc["engine"], "seeds": sweep.seeds,
        "timesteps_override": args.timesteps,
        "machine": "2 shared CPU cores, 1 torch thread per run",
        "statistics": "IQM and median of the final true return with 95% stratified-bootstrap percentile "
                      "intervals (2000 resamples); seeds solved with a 95% Wilson interval; vs control: the "
                      "headline counts only where its IQM and solved intervals both clear the control's",
        "time_ratio": "loop wall-clock (minus evaluating the policy) / SB3's learn() on the true reward, same "
                      "algorithm, settings, env steps and seed, in the same sweep (runs share the machine)",
        "overhead_ratio": "the same loop wall-clock / the time SB3's learn() spent outside our callback and "
                          "reward calls in the same process",
        "rows_run": [r.name for r in wanted], "rows_not_run": [r.name for r in all_rows if r not in wanted],
        "failed_runs": [f"{r['row']} seed {r['seed']}: {r['error']}" for r in doc["runs"] if "error" in r],
        "rows": summary}, indent=1) + "\n")
    print(format_table(summary))
    print()
    print_extra(summary)
    if after is not None:
        after(summary)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
