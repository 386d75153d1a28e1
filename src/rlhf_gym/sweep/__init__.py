"""Sweeps: a grid of run jobs over tasks, feedback types, teachers, budgets, settings and seeds, run on Ray
(or one after another), summarised into one results table with intervals (:mod:`rlhf_gym.stats`).

A spec is a TOML or YAML file::

    out = "runs/sweep-cartpole"      # run folders and sweep.json go here
    seeds = 5                        # or a list: [0, 1, 2]
    metric = "mean_return"           # result key the table summarises
    control = {teacher = "random"}   # each row's control: the row differing only in these values

    [base]                           # TrainConfig fields shared by every run; `set` = --set settings
    feedback = "preference"
    timesteps = 20000
    set = {eval_points = 5}

    [grid]                           # the cross product of these lists; each combination is a row
    env = ["CartPole-v1"]
    teacher = ["oracle", "random"]
    budget = [10, 20]

    [[rows]]                         # rows outside the grid (their own values on top of `base`)
    name = "cartpole-zero-labels"
    env = "CartPole-v1"
    budget = 0
    role = "control"

A row may also give ``threshold`` (the return counted as solved; default: the environment's own
``reward_threshold``), ``role`` (``headline``, ``control``, ...) and ``control`` (a row name, or a
table of values as above). Every run gets ``threads=1`` and no progress bar, so runs are the same
whichever worker runs them: the same seeds give the same numbers as a sequential run.
"""

from __future__ import annotations

import itertools
import json
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rlhf_gym.config import TrainConfig

#: keys of a row that are not TrainConfig fields
ROW_KEYS = ("name", "role", "control", "threshold", "set", "job")
#: what a row may run: ``job = NAME`` (default ``train``, the run job of the row's feedback type)
JOB_KINDS: dict[str, str] = {
    "train": "rlhf_gym.pipeline:train",
    "true-reward": "rlhf_gym.sweep.baselines:true_reward",  # SB3 on the true reward, same steps
}
SPEC_KEYS = ("out", "seeds", "metric", "control", "base", "grid", "rows", "name", "higher_is_better")
_CONFIG_FIELDS = {f.name for f in fields(TrainConfig)} - {"extra", "out", "seed", "progress", "threads"}


@dataclass(frozen=True)
class Job:
    """One run: a row of the sweep at one seed."""

    row: str
    seed: int
    config: dict[str, Any]
    job: str = "train"

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config)


@dataclass
class Row:
    """One line of the results table: a configuration run at every seed of the sweep."""

    name: str
    values: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    role: str = "headline"
    control: str | dict[str, Any] | None = None
    threshold: float | None = None
    job: str = "train"


@dataclass
class Sweep:
    """A parsed spec: rows, seeds and where to put the runs."""

    rows: list[Row]
    seeds: list[int]
    out: Path
    metric: str = "mean_return"
    name: str = "sweep"
    higher_is_better: bool = True

    def jobs(self) -> list[Job]:
        """Every (row, seed) run, seed-major so a cut-short sweep has every row at its first seeds."""
        out = []
        for seed in self.seeds:
            for row in self.rows:
                cfg = {**row.values, "extra": dict(row.settings), "seed": seed, "progress": False, "threads": 1,
                       "out": str(self.out / _slug(row.name) / f"seed{seed}")}
                out.append(Job(row.name, seed, cfg, row.job))
        return out

    def control_of(self, row: Row) -> Row | None:
        """The row ``row`` is compared with (None for rows without a control, and for controls themselves)."""
        if row.control is None or row.role in ("control", "baseline"):
            return None
        if isinstance(row.control, str):
            found = [r for r in self.rows if r.name == row.control]
            if not found:
                raise ValueError(f"row {row.name!r}: control {row.control!r} is not a row of the sweep")
            return found[0]
        want = {**row.values, **{k: v for k, v in row.control.items() if k != "set"}}
        want_set = {**row.settings, **row.control.get("set", {})}
        if want == row.values and want_set == row.settings:
            return None  # this row is the control
        for r in self.rows:
            if r.values == want and r.settings == want_set:
                return r
        return None


def load_spec(path: str | Path, out: str | Path | None = None, seeds: int | list[int] | None = None) -> Sweep:
    """Read a TOML or YAML sweep spec; ValueError naming what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"sweep spec {p} does not exist")
    text = p.read_text()
    if p.suffix == ".toml":
        import tomllib

        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{p}: not valid TOML: {exc}") from None
    elif p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError("YAML sweep specs need PyYAML (pip install pyyaml), or write the spec as TOML") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{p}: not valid YAML: {exc}") from None
    else:
        raise ValueError(f"sweep spec must be .toml, .yaml or .yml, got {p.name}")
    return parse_spec(raw, default_out=f"runs/sweep-{p.stem}", out=out, seeds=seeds)


def parse_spec(raw: dict[str, Any], default_out: str = "runs/sweep", out: str | Path | None = None,
               seeds: int | list[int] | None = None) -> Sweep:
    """Build a :class:`Sweep` from a spec's parsed contents (see the module docstring)."""
    if not isinstance(raw, dict):
        raise ValueError("a sweep spec is a table of keys (out, seeds, base, grid, rows, ...)")
    _check_keys(raw, SPEC_KEYS, "the sweep spec")
    base = dict(raw.get("base") or {})
    _check_keys(base, (*_CONFIG_FIELDS, *ROW_KEYS), "[base]")
    grid = dict(raw.get("grid") or {})
    _check_keys(grid, (*_CONFIG_FIELDS, "set"), "[grid]")
    seeds = raw.get("seeds", 5) if seeds is None else seeds
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list or (isinstance(seeds, int) and seeds < 1):
        raise ValueError(f"seeds must be a positive count or a non-empty list, got {seeds!r}")
    default_control = raw.get("control")
    rows: list[Row] = []
    if grid:
        for k, v in grid.items():
            if not isinstance(v, list) or not v:
                raise ValueError(f"[grid] {k} must be a non-empty list, got {v!r}")
        keys = list(grid)
        varying = [k for k in keys if len(grid[k]) > 1]
        for combo in itertools.product(*(grid[k] for k in keys)):
            d = dict(base)
            d.update(dict(zip(keys, combo, strict=True)))
            if "set" in grid:
                d["set"] = {**(base.get("set") or {}), **(d["set"] or {})}
            name = "/".join(_label(k, d[k]) for k in varying) or "run"
            rows.append(_row(name, d, default_control))
    for i, r in enumerate(raw.get("rows") or []):
        if not isinstance(r, dict):
            raise ValueError(f"rows[{i}] must be a table, got {r!r}")
        _check_keys(r, (*_CONFIG_FIELDS, *ROW_KEYS), f"rows[{i}]")
        d = {**base, **r, "set": {**(base.get("set") or {}), **(r.get("set") or {})}}
        rows.append(_row(str(r.get("name") or f"row{i}"), d, default_control))
    if not rows:
        raise ValueError("the sweep spec has no runs: give a [grid] or [[rows]]")
    names = [r.name for r in rows]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"row names must be unique; repeated: {', '.join(dup)} (give rows a `name`)")
    sweep = Sweep(rows, seed_list, Path(out or raw.get("out") or default_out), metric=str(raw.get("metric", "mean_return")),
                  name=str(raw.get("name", Path(out or raw.get("out") or default_out).name)),
                  higher_is_better=bool(raw.get("higher_is_better", True)))
    for job in sweep.jobs()[: len(rows)]:  # every row's config is checked before anything runs
        try:
            if job.job == "train":
                job.train_config().validate()
            else:
                check_env_id(job.train_config().env)
        except ValueError as exc:
            raise ValueError(f"row {job.row!r}: {exc}") from None
    for r in rows:
        sweep.control_of(r)
        if r.control is not None and not isinstance(r.control, str) and "role" not in _explicit_roles(raw, r):
            own = {**r.values, **{k: v for k, v in r.control.items() if k != "set"}} == r.values
            if own and {**r.settings, **r.control.get("set", {})} == r.settings:
                r.role = "control"  # the row the others are compared with
    return sweep


def _explicit_roles(raw: dict[str, Any], row: Row) -> dict[str, Any]:
    for r in raw.get("rows") or []:
        if isinstance(r, dict) and r.get("name") == row.name and "role" in r:
            return r
    return dict(raw.get("base") or {})


def _row(name: str, d: dict[str, Any], default_control: Any) -> Row:
    values = {k: v for k, v in d.items() if k in _CONFIG_FIELDS}
    settings = dict(d.get("set") or {})
    control = d.get("control", default_control)
    if control is not None and not isinstance(control, (str, dict)):
        raise ValueError(f"row {name!r}: control must be a row name or a table of values, got {control!r}")
    job = str(d.get("job", "train"))
    if job not in JOB_KINDS:
        raise ValueError(f"row {name!r}: job must be one of {', '.join(JOB_KINDS)}, got {job!r}")
    threshold = d.get("threshold")
    if threshold is None:
        threshold = env_threshold(str(values.get("env", TrainConfig.env)))
    return Row(name, values, settings, role=str(d.get("role", "headline")), control=control,
               threshold=None if threshold is None else float(threshold), job=job)


def check_env_id(env_id: str) -> None:
    """ValueError unless :func:`~rlhf_gym.envs.make_env` can build ``env_id`` (a registered id, an entry point
    or an old-API class: what the run jobs accept), with make_env's message (e.g. the extra to install)."""
    from rlhf_gym.envs import make_env

    try:
        make_env(env_id).close()
    except Exception as exc:
        raise ValueError(f"unknown environment {env_id!r}: {exc}") from None


def env_threshold(env_id: str) -> float | None:
    """The environment's own "solved" return, if it declares one."""
    import gymnasium as gym

    try:
        return gym.spec(env_id).reward_threshold
    except Exception:  # unknown ids are reported by validate()
        return None


def _check_keys(d: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    bad = sorted(k for k in d if k not in allowed)
    if bad:
        raise ValueError(f"unknown key(s) in {where}: {', '.join(bad)}; valid keys: {', '.join(sorted(allowed))}")


def _label(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "default"
    if key == "budget":
        return f"{value}-labels"
    return str(value)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in name)


# ---------------------------------------------------------------- running


def run_one(job: Job) -> dict[str, Any]:
    """Run one job in this process; a failure is a result too (recorded, the sweep goes on)."""
    import importlib

    t0 = time.time()
    try:
        mod, fn = JOB_KINDS[job.job].split(":")
        result = getattr(importlib.import_module(mod), fn)(job.train_config())
        return {"row": job.row, "seed": job.seed, "job": job.job, "config": job.config, "result": _jsonable(result),
                "wall_s": time.time() - t0}
    except Exception as exc:  # noqa: BLE001 - recorded in the table, never lost
        return {"row": job.row, "seed": job.seed, "config": job.config, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8), "wall_s": time.time() - t0}


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: float(o) if hasattr(o, "__float__") else str(o)))


def run_serial(jobs: list[Job], on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the jobs one after another in this process."""
    out = []
    for job in jobs:
        rec = run_one(job)
        out.append(rec)
        if on_done:
            on_done(rec)
    return out


def run_ray(jobs: list[Job], address: str | None = None, cpus: int | None = None,
            on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the jobs as Ray tasks (one CPU each) on a local Ray instance or the cluster at ``address``.

    Without ``address`` a local instance is started with ``cpus`` (default: every core of this machine)
    and shut down afterwards; with one, the jobs run wherever the cluster has room. Results come back
    in job order.
    """
    def failed(job: Job, exc: BaseException) -> dict[str, Any]:  # a worker that died: record it, go on
        return {"row": job.row, "seed": job.seed, "config": job.config, "error": f"{type(exc).__name__}: {exc}"}

    return map_tasks(run_one, jobs, address=address, cpus=cpus, on_done=on_done, on_error=failed)


def map_tasks(fn: Callable[[Any], Any], items: list[Any], serial: bool = False, address: str | None = None,
              cpus: int | None = None, on_done: Callable[[Any], None] | None = None,
              on_error: Callable[[Any, BaseException], Any] | None = None) -> list[Any]:
    """``[fn(x) for x in items]`` as Ray tasks of one CPU each (or in this process with ``serial``).

    For benchmarks whose unit of work is not a run job: ``fn`` must be importable or defined in the
    script being run (Ray pickles it). Results come back in item order; ``on_done`` sees each as it
    finishes; an exception in a task is passed to ``on_error`` (default: raised).
    """
    if serial:
        out = []
        for x in items:
            try:
                r = fn(x)
            except Exception as exc:
                if on_error is None:
                    raise
                r = on_error(x, exc)
            out.append(r)
            if on_done:
                on_done(r)
        return out
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = cpus
        ray.init(**kwargs)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending = {task.remote(x): i for i, x in enumerate(items)}
        results: dict[int, Any] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    r = ray.get(ref)
                except Exception as exc:
                    if on_error is None:
                        raise
                    r = on_error(items[i], exc)
                results[i] = r
                if on_done:
                    on_done(r)
        return [results[i] for i in range(len(items))]
    finally:
        if started:
            ray.shutdown()


def import_ray() -> Any:
    """Ray, or an error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ValueError("rlhf-gym sweep runs on Ray: pip install 'rlhf-gym[sweep]' (or use --serial)") from None
    return ray


# ---------------------------------------------------------------- the table


def table(sweep: Sweep, records: list[dict[str, Any]], reps: int = 2000) -> list[dict[str, Any]]:
    """One summary per row: the metric's IQM and median with bootstrap intervals, the seeds solved with
    a Wilson interval, and (for rows with a control) whether the headline's intervals clear the control's."""
    from rlhf_gym import stats

    by_row: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_row.setdefault(rec["row"], []).append(rec)
    summaries: dict[str, Any] = {}
    out = []
    for row in sweep.rows:
        recs = sorted(by_row.get(row.name, []), key=lambda r: r["seed"])
        ok = [r for r in recs if "result" in r and r["result"].get(sweep.metric) is not None]
        scores = [float(r["result"][sweep.metric]) for r in ok]
        line: dict[str, Any] = {"row": row.name, "role": row.role, "values": row.values, "settings": row.settings,
                                "threshold": row.threshold, "seeds": [r["seed"] for r in ok],
                                "scores": scores, "failed": [r["seed"] for r in recs if "error" in r]}
        used = [r["result"].get("feedback_used") for r in ok if r["result"].get("feedback_used") is not None]
        if used:
            line["feedback_used_median"] = float(stats.median(used))
        if scores:
            s = stats.summarise(scores, threshold=row.threshold if sweep.higher_is_better else None, reps=reps)
            summaries[row.name] = s
            line.update(s.to_dict())
        out.append(line)
    for row, line in zip(sweep.rows, out, strict=True):
        ctrl = sweep.control_of(row)
        if ctrl is None:
            continue
        line["control"] = ctrl.name
        if row.name in summaries and ctrl.name in summaries:
            line["vs_control"] = stats.compare(summaries[row.name], summaries[ctrl.name], sweep.higher_is_better)
    return out


def format_table(lines: list[dict[str, Any]], metric: str = "mean_return") -> str:
    """A Markdown table of :func:`table`'s rows."""
    head = ["row", "role", "seeds", f"{metric} IQM [95% CI]", "median [95% CI]", "solved [95% CI]", "answers",
            "vs control"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in lines:
        if "iqm" not in s:
            rows.append(f"| {s['row']} | {s['role']} | 0 | - | - | - | - | failed: {s['failed']} |")
            continue
        solved = "-" if s.get("solved") is None else (
            f"{s['solved']}/{s['n']} [{s['solved_ci'][0]:.2f}, {s['solved_ci'][1]:.2f}]")
        vs = "-"
        if "vs_control" in s:
            v = s["vs_control"]
            vs = ("clears " if v["counts"] else "does not clear ") + s["control"]
            if not v["counts"]:
                vs += " (" + ", ".join(f"{k[:-7]} {'yes' if ok else 'no'}" for k, ok in v.items() if k != "counts") + ")"
        elif s.get("control"):
            vs = f"{s['control']} not run"
        used = s.get("feedback_used_median")
        rows.append(f"| {s['row']} | {s['role']} | {s['n']}{' (' + str(len(s['failed'])) + ' failed)' if s['failed'] else ''} | "
                    f"{s['iqm']:.1f} [{s['iqm_ci'][0]:.1f}, {s['iqm_ci'][1]:.1f}] | "
                    f"{s['median']:.1f} [{s['median_ci'][0]:.1f}, {s['median_ci'][1]:.1f}] | {solved} | "
                    f"{'-' if used is None else f'{used:.0f}'} | {vs} |")
    return "\n".join(rows)


def run_sweep(sweep: Sweep, serial: bool = False, address: str | None = None, cpus: int | None = None,
              resume: bool = False, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run every job of the sweep (skipping those already in ``out/sweep.json`` with ``resume``), write
    ``out/sweep.json`` (every run's config and result, and the table) and return its contents."""
    sweep.out.mkdir(parents=True, exist_ok=True)
    path = sweep.out / "sweep.json"
    jobs = sweep.jobs()
    done: list[dict[str, Any]] = []
    if resume and path.exists():
        old = json.loads(path.read_text()).get("runs", [])
        want = {(j.row, j.seed): j.config for j in jobs}
        done = [r for r in old if "result" in r and want.get((r["row"], r["seed"])) == r["config"]]
        have = {(r["row"], r["seed"]) for r in done}
        jobs = [j for j in jobs if (j.row, j.seed) not in have]
    records = list(done)
    t0 = time.time()

    def on_done(rec: dict[str, Any]) -> None:
        records.append(rec)
        if log:
            v = rec["result"].get(sweep.metric) if "result" in rec else None
            what = (f"FAILED {rec['error']}" if "result" not in rec
                    else f"{v:.1f}" if isinstance(v, int | float) else str(v))
            log(f"[{len(records)}/{len(done) + len(jobs)}] {rec['row']} seed {rec['seed']}: "
                f"{sweep.metric} {what}")
        write(partial=True)

    def write(partial: bool) -> dict[str, Any]:
        doc = {"name": sweep.name, "metric": sweep.metric, "seeds": sweep.seeds,
               "engine": "serial" if serial else ("ray " + (address or f"local, {cpus or 'all'} cpus")),
               "complete": not partial, "wall_s": time.time() - t0,
               "rows": table(sweep, records), "runs": sorted(records, key=lambda r: (r["seed"], r["row"]))}
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return doc

    if jobs:
        if serial:
            run_serial(jobs, on_done)
        else:
            run_ray(jobs, address=address, cpus=cpus, on_done=on_done)
    return write(partial=False)
