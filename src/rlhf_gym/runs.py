"""A run folder: resolved config, metrics (CSV, JSONL, TensorBoard), plots, videos and the policy.

Layout of every run, whatever the feedback type::

    DIR/config.json      the resolved config (what the CLI or caller asked for, defaults filled in)
    DIR/feedback.db      the feedback store (SQLite) unless --db points elsewhere
    DIR/metrics.csv      one row per evaluation point; metrics.jsonl the same as JSON lines
    DIR/tb/              TensorBoard event files
    DIR/policy.json      {"kind": ..., "path": ...}: how :func:`load_policy` rebuilds the policy
    DIR/learning_curve.png, DIR/agent.mp4 (or .gif)
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PolicyFn = Callable[[np.ndarray], Any]

#: policy kind -> "module:function" taking (run_dir, policy_json) and returning an obs -> action callable.
POLICY_LOADERS: dict[str, str] = {
    "torch-mlp": "rlhf_gym.learners.common:load_mlp_policy",
    "sb3": "rlhf_gym.learners.sb3_policy:load_sb3_policy",
    "torch-mlp-continuous": "rlhf_gym.learners.bc:load_continuous_policy",
    "tabular": "rlhf_gym.learners.maxent_irl:load_tabular_policy",
}


class RunDir:
    """Helpers for reading and writing one run folder."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise FileNotFoundError(f"run folder {self.path} does not exist")

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def db_path(self) -> Path:
        return self.path / "feedback.db"

    def save_config(self, config: Any, **facts: Any) -> None:
        """Write ``config.json``: the config, plus ``facts`` the job settled when it started (e.g.
        ``resolved_device``, where ``device: auto`` actually ran)."""
        d = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        d.update(facts)
        self.file("config.json").write_text(json.dumps(d, indent=2, default=str) + "\n")

    def config(self) -> dict[str, Any]:
        p = self.file("config.json")
        if not p.exists():
            raise FileNotFoundError(f"{self.path} has no config.json: is it a run folder?")
        return json.loads(p.read_text())

    def save_policy_info(self, kind: str, path: str, **extra: Any) -> None:
        self.file("policy.json").write_text(json.dumps({"kind": kind, "path": path, **extra}, indent=2) + "\n")

    def load_policy(self) -> PolicyFn:
        """Rebuild the trained policy (deterministic/greedy) from this folder."""
        p = self.file("policy.json")
        if not p.exists():
            raise FileNotFoundError(f"{self.path} has no policy.json (training did not finish saving?)")
        info = json.loads(p.read_text())
        target = POLICY_LOADERS.get(info.get("kind", ""))
        if target is None:
            raise ValueError(f"unknown policy kind {info.get('kind')!r} in {p}")
        mod, fn = target.split(":")
        return getattr(importlib.import_module(mod), fn)(self.path, info)


class MetricsLogger:
    """One logger for a run: CSV + JSONL rows, TensorBoard scalars. Rows may gain new keys over time."""

    def __init__(self, run: RunDir, tensorboard: bool = True) -> None:
        self.run = run
        self.rows: list[dict[str, Any]] = []
        self._jsonl = run.file("metrics.jsonl").open("a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run.file("tb")))
            except Exception:  # tensorboard missing or broken: CSV/JSONL still hold everything
                self._tb = None
        self._t0 = time.time()

    def log(self, step: int, **values: Any) -> dict[str, Any]:
        row = {"step": int(step), "wall_s": round(time.time() - self._t0, 3), **values}
        self.rows.append(row)
        self._jsonl.write(json.dumps(row, default=float) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool):
                    self._tb.add_scalar(k, float(v), step)
        self._write_csv()
        return row

    def _write_csv(self) -> None:
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        with self.run.file("metrics.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def plot_curve(rows: Sequence[dict[str, Any]], x: str, ys: Sequence[str], path: str | Path, title: str = "",
               hline: float | None = None) -> Path | None:
    """A PNG of ``ys`` against ``x`` from metric rows (rows missing a key are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for y in ys:
        pts = [(r[x], r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None]
        if pts:
            xs, vs = zip(*pts, strict=True)
            ax.plot(xs, vs, marker="o", ms=3, label=y)
    if hline is not None:
        ax.axhline(hline, color="grey", ls="--", lw=1, label=f"threshold {hline:g}")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_video(frames: Sequence[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write frames as MP4 (H.264 through imageio-ffmpeg); fall back to GIF where no encoder works."""
    import imageio.v2 as imageio

    path = Path(path)
    if not frames:
        raise ValueError("no frames to write (did rendering fail?)")
    if path.suffix.lower() == ".mp4":
        try:
            with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=1) as w:
                for fr in frames:
                    w.append_data(fr)
            return path
        except Exception:
            path = path.with_suffix(".gif")
    imageio.mimsave(path, list(frames), duration=1000 / fps, loop=0)
    return path
