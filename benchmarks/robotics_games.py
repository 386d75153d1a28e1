"""Benchmark: robotics (MuJoCo) and pixel games (MinAtar) from simulated preferences, with controls.

Rows (3 seeds by default): each task's preference row, a random-teacher control with the same labels and
steps, and SB3 on the true reward with the same algorithm, defaults and environment steps (the baseline),
all in the same sweep (:mod:`rlhf_gym.sweep`, as ``benchmarks/preference.py``, whose runner, statistics and
tables this script shares). Environment steps are stated per row; they are the only number that differs
between tasks, and they are recorded in the JSON.

    PYTHONPATH=src python benchmarks/robotics_games.py --rows invpend-oracle-20,invpend-random-20,invpend-sac-true-reward
    PYTHONPATH=src python benchmarks/robotics_games.py --rows minatar-breakout-oracle-200,minatar-breakout-random-200,minatar-breakout-ppo-true-reward --cpus 2 --out benchmarks/results/robotics_games-minatar.json

A 2-core CPU machine runs the InvertedPendulum rows (20k SAC steps) and the MinAtar rows (200k PPO steps);
InvertedDoublePendulum, Reacher and the Hopper / Pong full-length runs are listed with their expected cost
and run where a bigger machine is available (``--device auto`` puts SB3 on a GPU when there is one).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import preference as P  # noqa: E402  (the preference benchmark's rows, runner, summary and tables)

RESULTS = Path(__file__).parent / "results" / "robotics_games.json"


def rows() -> list[P.Row]:
    ip, mb = 20_000, 200_000
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


def print_vs_baseline(summary: list[dict[str, Any]]) -> None:
    """Each row's mean final return as a share of SB3 on the true reward of the same task (same steps)."""
    base = {s["values"]["env"]: s for s in summary if s.get("role") == "baseline" and "mean" in s}
    print("\n| row | mean return | SB3 true reward (same steps) | share |")
    print("|---|---|---|---|")
    for s in summary:
        b = base.get(s["values"]["env"])
        if b is None or s is b or "mean" not in s:
            continue
        share = s["mean"] / b["mean"] if b["mean"] else float("nan")
        print(f"| {s['row']} | {s['mean']:.2f} | {b['mean']:.2f} | {share:.2f} |")


def main(argv: list[str] | None = None) -> int:
    return P.run_benchmark(argv, rows(), RESULTS, "benchmarks/robotics_games.py", __doc__ or "", "robotics_games",
                           after=print_vs_baseline)


if __name__ == "__main__":
    sys.exit(main())
