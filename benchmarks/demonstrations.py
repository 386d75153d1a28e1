"""Benchmark: learning from demonstrations (BC, DAgger, GAIL, AIRL, maximum-entropy IRL) against controls.

Rows (each over the same seeds; ``median [min, max]`` of the true return of the saved policy over 20
held-out episodes, seeds 10 000+):

* CartPole-v1, 10 expert episodes (the cached SB3 expert, recorded once per seed and shared by every
  learner): ``bc``, ``gail``, ``airl`` from those demonstrations; ``dagger`` with 200 expert labels. Bar: 475.
* The same learners from 10 *random-policy* "demonstrations" (DAgger: 200 random labels), same seeds: the
  control; it must not reach the bar.
* The same on Pendulum-v1 (``pendulum-bc|gail|airl``, bar: -200; the cached SAC expert, SAC generators)
  and InvertedPendulum-v5 (``invpend-bc|gail``, bar: 950; needs the ``mujoco`` extra). AIRL rows also train
  a fresh policy on each recovered reward (``train --reward DIR``): the transfer inverse RL is for.
* SB3 on the true reward (``cartpole-ppo``, ``pendulum-sac``, ``invpend-sac``; this project's settings,
  :func:`rlhf_gym.learners.preference.make_algo`) in the same run: the environment steps it needs to first
  reach the bar (20-episode check 10 times along GAIL's step budget), the baseline for GAIL/AIRL's steps.
* Demonstrations + preferences on CartPole-v1 (``cartpole-pref-demos``): 5 expert episodes pre-train the
  preference reward model (D-REX-ranked comparisons), then 10 oracle labels refine it; controls with the
  same seeds: 5 random-policy "demonstrations" + 10 labels, and 10 labels without demonstrations.
  ``cartpole-pref-demos-bc`` adds ``demo_bc=true`` (the policy cloned first); its controls: random
  "demonstrations" + BC + 10 labels, and expert demonstrations + BC with no labels (what the labels add).
* MountainCar-v0, 5 expert episodes (``mountaincar-bc|gail|airl``, bar: a mean of -120, i.e. the goal reached;
  the cached expert is DQN there, PPO's defaults never reach the goal), where preferences alone failed; and
  ``mountaincar-pref-demos(-bc)``: the demonstrations + preferences rows with 50 oracle labels.
* FrozenLake-v1 (4x4 and 8x8, slippery), 100 expert episodes (the exact optimal policy of the transition
  table): ``maxent-irl``; reported: agreement of the recovered reward's optimal policy with the expert's on
  every non-terminal state, and its success rate as a share of the expert's. Control: 100 random episodes.

Every run goes through the product's own path (``rlhf_gym.pipeline.train`` with ``--feedback
demonstration``), so store, lineage and saving are part of what is timed.

    python benchmarks/demonstrations.py [--seeds 5] [--rows cartpole-bc,cartpole-dagger,...]

Writes ``benchmarks/results/demonstrations.json``, updated after every run and merged by row, so rows run
separately (or cut short) keep their results; each row states how many seeds actually ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhf_gym.config import TrainConfig, parse_set
from rlhf_gym.envs import make_env
from rlhf_gym.pipeline import train
from rlhf_gym.rollouts import evaluate_policy

RESULTS = Path(__file__).parent / "results" / "demonstrations.json"
#: row prefix -> (environment, bar on the median true return, learners, SB3 baseline on the true reward)
TASKS = {"cartpole": ("CartPole-v1", 475.0, ("bc", "dagger", "gail", "airl"), "ppo"),
         "pendulum": ("Pendulum-v1", -200.0, ("bc", "gail", "airl"), "sac"),
         "invpend": ("InvertedPendulum-v5", 950.0, ("bc", "gail"), "sac"),
         "mountaincar": ("MountainCar-v0", -120.0, ("bc", "gail", "airl"), "ppo")}
#: expert episodes per row where the issue states fewer than 10 (MountainCar-v0: 5)
DEMO_EPISODES = {"mountaincar": 5}
CARTPOLE_ROWS = TASKS["cartpole"][2]
#: demonstrations + preferences: row prefix -> oracle labels after the demonstrations (the issue's numbers)
PREF_LABELS = {"cartpole": 10, "mountaincar": 50}
PREF_ROWS = tuple(f"{k}-pref-demos{x}" for k in PREF_LABELS for x in ("", "-bc"))
BASELINE_ROWS = tuple(f"{k}-{v[3]}" for k, v in TASKS.items())
ROWS = (*(f"{k}-{x}" for k, v in TASKS.items() for x in v[2]), *BASELINE_ROWS, "frozenlake4-maxent",
        "frozenlake8-maxent", *PREF_ROWS)
BAR = 475.0


def summary(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {"median": float(np.median(xs)), "min": float(np.min(xs)), "max": float(np.max(xs))}


def fmt(s: dict[str, float] | None, digits: int = 1) -> str:
    if s is None:
        return "-"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def record(env_id: str, teacher: str, seed: int, episodes: int, folder: Path, env_kwargs: dict | None = None) -> Path:
    """Record demonstrations with the product's demonstration teacher into a store; return the JSONL copy."""
    from rlhf_gym.demos.data import demos_from_store, record_demos, write_jsonl
    from rlhf_gym.feedback.registry import TeacherRequest, make_teacher
    from rlhf_gym.store import FeedbackStore

    store = FeedbackStore(folder / "feedback.db")
    rid = store.add_run(f"demos-{teacher}-{seed}")
    src = make_teacher(TeacherRequest("demonstration", teacher, env_id, seed=seed, store=store, run_id=rid,
                                      log=lambda _m: None))
    record_demos(src, env_id, episodes, seed=seed, run_id=rid)
    path = write_jsonl([d.traj for d in demos_from_store(store, run_id=rid)], folder / "demos.jsonl")
    store.close()
    return path


#: ``--set key=value`` settings for every demonstration run (an ablation; rows are stored as ``row+key=value``)
EXTRA: dict[str, str] = {}


def run_job(env_id: str, learner: str, seed: int, out: Path, demos: Path | None = None, teacher: str = "expert",
            budget: int = 10) -> dict[str, Any]:
    cfg = TrainConfig(env=env_id, feedback="demonstration", learner=learner, teacher=teacher, budget=budget,
                      seed=seed, out=str(out), demos=str(demos) if demos else None, eval_episodes=20, progress=False,
                      extra=dict(EXTRA))
    t0 = time.time()
    res = train(cfg)
    res["wall_s"] = round(time.time() - t0, 2)
    return res


def env_row(task: str, learner: str, seeds: list[int], tmp: Path, save: Any) -> dict[str, Any]:
    """One learner on one task from 10 expert episodes (DAgger: 200 expert labels), against the same learner on
    10 random-policy "demonstrations" (DAgger: a random labeller) with the same seeds. AIRL rows also train a
    fresh SB3 policy on each recovered reward (``train --reward DIR``, the transfer inverse RL is for)."""
    env_id, bar = TASKS[task][0], TASKS[task][1]
    episodes = DEMO_EPISODES.get(task, 10)
    runs: dict[str, list[dict[str, Any]]] = {"expert": [], "random": []}
    for seed in seeds:
        for source in ("expert", "random"):
            folder = tmp / f"{task}-{source}-{seed}"
            folder.mkdir(exist_ok=True)
            if learner == "dagger":
                res = run_job(env_id, "dagger", seed, folder / "dagger", teacher=source, budget=200)
            else:
                demos = folder / "demos.jsonl"
                if not demos.exists():
                    record(env_id, source, seed, episodes, folder)
                res = run_job(env_id, learner, seed, folder / learner, demos=demos)
            r = {k: res.get(k) for k in ("mean_return", "std_return", "feedback_used", "env_steps", "wall_s",
                                         "demo_return", "disc_accuracy", "labels_used")} | {"seed": seed}
            if learner == "airl" and source == "expert":
                cfg = TrainConfig(env=env_id, feedback="preference", reward=str(folder / learner), seed=seed,
                                  out=str(folder / "transfer"), eval_episodes=20, progress=False)
                t0 = time.time()
                tr = train(cfg)
                r["transfer_return"], r["transfer_wall_s"] = tr["mean_return"], round(time.time() - t0, 2)
            runs[source].append(r)
            extra = f", transfer {r['transfer_return']:.1f}" if "transfer_return" in r else ""
            print(f"  {task} {learner} <- {source} seed {seed}: return {res['mean_return']:.1f}{extra} "
                  f"({res.get('env_steps', 0)} env steps, {res['wall_s']:.0f}s)", flush=True)
            save()
    exp = runs["expert"]
    out = {"env": env_id, "learner": learner, "seeds": len(exp), "bar": bar,
           "demos": "200 expert labels" if learner == "dagger" else f"{episodes} expert episodes",
           "expert": expert_summary(env_id),
           "return": summary([r["mean_return"] for r in exp]),
           "solved": sum(r["mean_return"] >= bar for r in exp),
           "control_return": summary([r["mean_return"] for r in runs["random"]]),
           "control_solved": sum(r["mean_return"] >= bar for r in runs["random"]),
           "expert_demo_return": summary([r["demo_return"] for r in exp if r.get("demo_return") is not None]),
           "env_steps": summary([float(r["env_steps"] or 0) for r in exp]),
           "wall_s": summary([r["wall_s"] for r in exp]), "runs": runs}
    if learner == "airl":
        out["transfer_return"] = summary([r["transfer_return"] for r in exp])
        out["transfer_solved"] = sum(r["transfer_return"] >= bar for r in exp)
    return out


def expert_summary(env_id: str) -> dict[str, Any] | None:
    """The cached expert's card (algorithm, bar, held-out return), reported beside every row built on it."""
    from rlhf_gym.feedback.teachers_evaluative import expert_card

    card = expert_card(env_id)
    return None if card is None else {k: card.get(k) for k in ("algo", "bar", "heldout_mean", "heldout_min",
                                                               "heldout_episodes", "steps")}


def pref_job(env_id: str, seed: int, out: Path, demos: Path | None, budget: int,
             extra: dict[str, Any]) -> dict[str, Any]:
    """One preference run (oracle teacher) through the product's path, optionally from ``--demos``."""
    cfg = TrainConfig(env=env_id, feedback="preference", teacher="oracle", budget=budget, seed=seed,
                      out=str(out), demos=str(demos) if demos else None, eval_episodes=20, progress=False,
                      extra=dict(EXTRA) | dict(extra))
    t0 = time.time()
    res = train(cfg)
    res["wall_s"] = round(time.time() - t0, 2)
    return res


PREF_DEMOS = 5


def pref_row(row: str, seeds: list[int], tmp: Path, save: Any, labels: int | None = None) -> dict[str, Any]:
    """Demonstrations + preferences: 5 expert demonstrations then the task's oracle labels (CartPole 10,
    MountainCar 50), against the same with 5 random-policy "demonstrations" and (the plain row) with none, or
    (the BC row) with no labels. ``labels``: that many labels instead of the task's (``--labels``)."""
    task = row.split("-", 1)[0]
    env_id, bar, labels = TASKS[task][0], TASKS[task][1], labels or PREF_LABELS[task]
    bc = row.endswith("-bc")
    extra = {"demo_bc": True} if bc else {}
    arms = {"expert": ("expert", labels), "random": ("random", labels)}
    arms.update({"no_labels": ("expert", 0)} if bc else {"no_demos": (None, labels)})
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in arms}
    for seed in seeds:
        for arm, (source, budget) in arms.items():
            demos = None
            if source is not None:
                folder = tmp / f"pref-{task}-{source}-{seed}"
                folder.mkdir(exist_ok=True)
                demos = folder / "demos.jsonl"
                if not demos.exists():
                    record(env_id, source, seed, PREF_DEMOS, folder)
            res = pref_job(env_id, seed, tmp / f"{row}-{arm}-{seed}", demos, budget, extra if demos else {})
            runs[arm].append({k: res.get(k) for k in ("mean_return", "std_return", "feedback_used", "timesteps",
                                                      "wall_s", "prequential_accuracy", "demo_pairs",
                                                      "demo_level_returns", "demo_fit_accuracy")} | {"seed": seed})
            print(f"  {row} {arm} seed {seed}: return {res['mean_return']:.1f} ({res['wall_s']:.0f}s)", flush=True)
            save()
    out: dict[str, Any] = {"env": env_id, "learner": "preference (ppo) + demos" + (" + BC" if bc else ""),
                           "seeds": len(runs["expert"]), "bar": bar,
                           "demos": f"{PREF_DEMOS} expert episodes + {labels} oracle labels",
                           "settings": extra, "runs": runs}
    for arm, rs in runs.items():
        out[f"{arm}_return"] = summary([r["mean_return"] for r in rs])
        out[f"{arm}_solved"] = sum(r["mean_return"] >= bar for r in rs)
    out["return"], out["solved"] = out["expert_return"], out["expert_solved"]
    out["control_return"], out["control_solved"] = out["random_return"], out["random_solved"]
    out["env_steps"] = summary([float(r["timesteps"] or 0) for r in runs["expert"]])
    out["wall_s"] = summary([r["wall_s"] for r in runs["expert"]])
    return out


def baseline_row(task: str, seeds: list[int], save: Any) -> dict[str, Any]:
    """SB3 on the true reward (PPO for discrete actions, SAC for continuous; this project's settings,
    :func:`rlhf_gym.learners.preference.make_algo`) for the steps GAIL/AIRL get: the environment steps until
    its greedy policy first averages the bar over 20 episodes (checked 10 times along the way)."""
    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_gym.envs import env_spec
    from rlhf_gym.learners.preference import PreferenceSettings, default_timesteps, make_algo

    env_id, bar, _learners, algo = TASKS[task]
    spec = env_spec(env_id)
    timesteps = default_timesteps(algo, spec.max_episode_steps)
    chunk = timesteps // 10
    runs = []
    for seed in seeds:
        t0 = time.time()
        venv = make_vec_env(lambda: make_env(env_id), n_envs=PreferenceSettings().n_envs if algo == "ppo" else 1,
                            seed=seed)
        model = make_algo(algo, venv, seed, timesteps)
        env = make_env(env_id)
        first = None
        done = 0
        while done < timesteps:
            model.learn(chunk, reset_num_timesteps=False)
            done += chunk
            ret = evaluate_policy(env, lambda o, m=model: m.predict(o, deterministic=True)[0], 20, seed=10_000).mean()
            if ret >= bar and first is None:
                first = done
                break
        runs.append({"seed": seed, "steps_to_bar": first, "wall_s": round(time.time() - t0, 2), "final_return": float(ret)})
        print(f"  {algo} true reward {env_id} seed {seed}: {bar} after {first} steps ({runs[-1]['wall_s']:.0f}s)",
              flush=True)
        save()
    got = [r["steps_to_bar"] for r in runs if r["steps_to_bar"] is not None]
    return {"env": env_id, "learner": f"{algo} (true reward)", "seeds": len(runs), "bar": bar, "timesteps": timesteps,
            "steps_to_bar": summary([float(x) for x in got]), "solved": len(got), "runs": runs}


def frozenlake_row(size: int, seeds: list[int], tmp: Path, save: Any) -> dict[str, Any]:
    import gymnasium as gym

    from rlhf_gym.learners.maxent_irl import TablePolicy, optimal_policy, tabular_mdp

    env_id = "FrozenLake-v1" if size == 4 else "FrozenLake8x8-v1"
    env = gym.make(env_id)
    mdp = tabular_mdp(env)
    expert = optimal_policy(mdp)
    desc = np.asarray(env.unwrapped.desc).astype(str).ravel()
    live = np.flatnonzero((desc != "H") & (desc != "G"))
    expert_success = float(evaluate_policy(env, TablePolicy(expert), 1000, seed=10_000).mean())
    runs: dict[str, list[dict[str, Any]]] = {"expert": [], "random": []}
    for seed in seeds:
        for source in ("expert", "random"):
            folder = tmp / f"fl{size}-{source}-{seed}"
            folder.mkdir(exist_ok=True)
            demos = record(env_id, source, seed, 100, folder)
            res = run_job(env_id, "maxent-irl", seed, folder / "run", demos=demos)
            rec = optimal_policy(mdp, np.asarray(res["reward"]))
            success = float(evaluate_policy(env, TablePolicy(rec), 1000, seed=10_000).mean())
            runs[source].append({"seed": seed, "agreement": float((rec[live] == expert[live]).mean()),
                                 "success": success, "success_vs_expert": success / max(expert_success, 1e-9),
                                 "wall_s": res["wall_s"]})
            print(f"  {env_id} maxent-irl <- {source} seed {seed}: agreement {runs[source][-1]['agreement']:.2f}, "
                  f"success {success:.3f} (expert {expert_success:.3f})", flush=True)
            save()
    e, c = runs["expert"], runs["random"]
    return {"env": env_id + " (slippery)", "learner": "maxent-irl", "seeds": len(e), "demos": "100 episodes",
            "expert_success": expert_success, "agreement": summary([r["agreement"] for r in e]),
            "success_vs_expert": summary([r["success_vs_expert"] for r in e]),
            "control_agreement": summary([r["agreement"] for r in c]),
            "control_success_vs_expert": summary([r["success_vs_expert"] for r in c]),
            "wall_s": summary([r["wall_s"] for r in e]), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {', '.join(ROWS)}")
    p.add_argument("--note", default="", help="a note stored with this run's rows (e.g. why seeds were cut)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="settings for every demonstration run (an ablation: rows are stored as row+KEY=VALUE)")
    p.add_argument("--labels", type=int, default=None,
                   help="labels for the demonstrations + preferences rows instead of the task's (stored as row+labels=N)")
    args = p.parse_args(argv)
    if args.labels is not None and args.labels < 1:
        p.error(f"--labels must be at least 1, got {args.labels}")
    try:
        EXTRA.update(parse_set(args.set))  # typed as the CLI types them
    except ValueError as e:
        p.error(str(e))
    suffix = "".join(f"+{k}={v}" for k, v in sorted(EXTRA.items()))
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad:
        p.error(f"unknown rows {bad}; choose from {', '.join(ROWS)}")
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data.setdefault("rows", {})
    data["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(), "torch_threads": 1}
    data["notes"] = data.get("notes", {})

    mine: set[str] = set()

    def save() -> None:
        """Write this process's rows into the file as it is now (another process may have added rows)."""
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        now = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        now.setdefault("rows", {}).update({k: data["rows"][k] for k in mine})
        now["machine"], now["notes"] = data["machine"], {**now.get("notes", {}), **data["notes"]}
        tmp_file = RESULTS.with_suffix(f".{os.getpid()}.tmp")
        tmp_file.write_text(json.dumps(now, indent=1, default=float) + "\n")
        os.replace(tmp_file, RESULTS)

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for row in rows:
            print(f"{row} ({len(seeds)} seeds)", flush=True)
            t0 = time.time()
            if row in BASELINE_ROWS:
                out = baseline_row(row.split("-", 1)[0], seeds, save)
            elif row in PREF_ROWS:
                out = pref_row(row, seeds, tmp, save, args.labels)
            elif row.split("-", 1)[0] in TASKS:
                out = env_row(row.split("-", 1)[0], row.split("-", 1)[1], seeds, tmp, save)
            else:
                out = frozenlake_row(4 if row.startswith("frozenlake4") else 8, seeds, tmp, save)
            out["row_wall_s"] = round(time.time() - t0, 1)
            out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            if args.note:
                out["note"] = args.note
            name = row + suffix + (f"+labels={args.labels}" if args.labels and row in PREF_ROWS else "")
            data["rows"][name] = out
            mine.add(name)
            save()
    print_table(data)
    return 0


def print_table(data: dict[str, Any]) -> None:
    print(f"\n{'row':<22} {'seeds':>5}  {'result (median [min, max])':<36} {'control':<30} {'env steps':<26} wall s")
    for name, r in data["rows"].items():
        if name in BASELINE_ROWS:
            steps = r.get("steps_to_bar", r.get("steps_to_475"))
            print(f"{name:<22} {r['seeds']:>5}  steps to {r.get('bar', BAR)}: {fmt(steps, 0):<20} "
                  f"({r['solved']}/{r['seeds']}) {'':<16} {'':<26} {fmt(r.get('wall_s'), 0) if 'wall_s' in r else ''}")
        elif "agreement" in r:
            res = f"agree {fmt(r['agreement'], 2)}, succ {fmt(r['success_vs_expert'], 2)}"
            ctl = f"agree {fmt(r['control_agreement'], 2)}"
            print(f"{name:<22} {r['seeds']:>5}  {res:<36} {ctl:<30} {'-':<26} {fmt(r['wall_s'], 0)}")
        elif name.split("+")[0] in PREF_ROWS:
            res = f"{fmt(r['return'])} ({r['solved']}/{r['seeds']} >= {r.get('bar', BAR):g})"
            ctl = "; ".join(f"{arm} {fmt(r[f'{arm}_return'])} ({r[f'{arm}_solved']}/{r['seeds']})"
                            for arm in ("random", "no_demos", "no_labels") if f"{arm}_return" in r)
            print(f"{name:<22} {r['seeds']:>5}  {res:<36} {ctl}")
        else:
            res = f"{fmt(r['return'])} ({r['solved']}/{r['seeds']} >= {r.get('bar', BAR):g})"
            if "transfer_return" in r:
                res += f"; transfer {fmt(r['transfer_return'])} ({r['transfer_solved']}/{r['seeds']})"
            ctl = f"{fmt(r['control_return'])} ({r['control_solved']}/{r['seeds']})"
            print(f"{name:<22} {r['seeds']:>5}  {res:<36} {ctl:<30} {fmt(r['env_steps'], 0):<26} {fmt(r['wall_s'], 0)}")


if __name__ == "__main__":
    sys.exit(main())
