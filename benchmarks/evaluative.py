"""Benchmark: answers needed to solve CartPole-v1 from evaluative feedback, per learner and teacher.

For each learner (tamer, reinforce, coach) x teacher (oracle, noisy eps=0.2, delayed 2-6 steps, random
control) x seed: the greedy policy is checked on the true reward as answers come in; "solved" is the first
check with mean return >= 475 over 20 episodes that a 100-episode check confirms. After the solve, the run
goes on for 1,000 more answers with a 20-episode check every 50; it "stays solved" when >= 90% pass.
Reported: seeds solved with a 95% Wilson interval, answers to solve (IQM and median over the solved
seeds, with 95% stratified-bootstrap intervals, :mod:`rlhf_gym.stats`), environment steps watched,
wall-clock, and SB3 PPO on the true reward in the same run for comparison, with the same seeds. A row
counts against the random-teacher control of its learner only where its solved-share interval clears
the control's. A harder task (Acrobot-v1) row keeps the learners honest. Runs are Ray tasks (one CPU
each, ``rlhf_gym.sweep.map_tasks``; ``--serial`` without Ray, ``--address`` for a cluster).

    python benchmarks/evaluative.py [--seeds 5] [--quick] [--serial | --cpus N | --address ADDR]

Writes ``benchmarks/results/evaluative.json`` (updated after every run, so a cut-short run keeps its rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhf_gym import stats
from rlhf_gym.envs import make_env
from rlhf_gym.feedback.teachers_evaluative import (
    AdvantageJudge,
    RandomJudge,
    SimulatedTeacher,
    expert_q_function,
    load_or_train_expert,
)
from rlhf_gym.learners.common import LearnerSettings
from rlhf_gym.learners.evaluative_loop import TeachStats, learner_class, make_learner, teach
from rlhf_gym.rollouts import evaluate_policy
from rlhf_gym.sweep import map_tasks

RESULTS = Path(__file__).parent / "results" / "evaluative.json"
LEARNERS = ("tamer", "reinforce", "coach")
TEACHERS = ("oracle", "noisy", "delayed", "random")
#: answers after which a run that has not solved gives up (random-teacher runs use the learner's cap too)
CAP = {"tamer": 600, "reinforce": 1500, "coach": 2500}
HARD_CAP = 600  # answers for the Acrobot-v1 row
STAY_ANSWERS, STAY_EVERY = 1000, 50


def check_points(n: int) -> bool:
    """When to check before the solve: every 10 answers up to 300, every 25 after."""
    return n % 10 == 0 if n <= 300 else n % 25 == 0


def one_run(env_id: str, learner: str, teacher: str, seed: int, q_fn: Any, threshold: float, cap: int,
            stay_answers: int, settings: LearnerSettings | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    judge = RandomJudge(np.random.default_rng(seed + 99)) if teacher == "random" else AdvantageJudge(q_fn)
    src = SimulatedTeacher(judge, f"sim-{teacher}", rng=np.random.default_rng(seed + 1),
                           noise=0.2 if teacher == "noisy" else 0.0, delay=(2, 6) if teacher == "delayed" else None)
    agent = make_learner(learner, make_env(env_id).observation_space.shape[0],
                         int(make_env(env_id).action_space.n), rng, settings)
    res: dict[str, Any] = {"learner": learner, "teacher": teacher, "seed": seed, "env": env_id,
                           "solved_at": None, "env_steps_at_solve": None, "wall_s_at_solve": None,
                           "checks_after": [], "best_mean": -np.inf}
    t0 = time.time()
    eval_seed = [100_000]

    def check(episodes: int) -> float:
        eval_seed[0] += 1000
        return float(evaluate_policy(env_id, agent.model.greedy, episodes, seed=eval_seed[0], batched=True).mean())

    def on_answer(st: TeachStats) -> bool:
        n = st.used
        if res["solved_at"] is None:
            if not check_points(n):
                return False
            m = check(20)
            res["best_mean"] = max(res["best_mean"], m)
            if m >= threshold and check(100) >= threshold:
                res.update(solved_at=n, env_steps_at_solve=st.env_steps, wall_s_at_solve=round(time.time() - t0, 2))
            return n >= cap and res["solved_at"] is None
        if (n - res["solved_at"]) % STAY_EVERY == 0:
            res["checks_after"].append(check(20))
        return n - res["solved_at"] >= stay_answers

    stats = teach(make_env(env_id, seed=seed), agent, src, cap + stay_answers, seed=seed, on_answer=on_answer)
    after = res["checks_after"]
    res["stays_solved"] = None if res["solved_at"] is None else (
        bool(after) and float(np.mean([m >= threshold for m in after])) >= 0.9)
    res["stay_pass_rate"] = float(np.mean([m >= threshold for m in after])) if after else None
    res.update(answers_total=stats.used, env_steps_total=stats.env_steps, wall_s=round(time.time() - t0, 2))
    return res


def ppo_run(env_id: str, seed: int, threshold: float, max_steps: int = 200_000) -> dict[str, Any]:
    """SB3 PPO (defaults) on the true reward: env steps and wall-clock to the same solve criterion."""
    from stable_baselines3 import PPO

    from rlhf_gym.rollouts import evaluate_policy

    t0 = time.time()
    model = PPO("MlpPolicy", make_env(env_id, seed=seed), seed=seed, verbose=0, device="cpu")
    ev = make_env(env_id)
    pol = lambda o: int(model.predict(o, deterministic=True)[0])  # noqa: E731
    steps = 0
    while steps < max_steps:
        model.learn(5000, reset_num_timesteps=False)
        steps += 5000
        if evaluate_policy(ev, pol, 20, seed=100_000).mean() >= threshold and \
                evaluate_policy(ev, pol, 100, seed=200_000).mean() >= threshold:
            return {"seed": seed, "solved_at_env_steps": steps, "wall_s": round(time.time() - t0, 2)}
    return {"seed": seed, "solved_at_env_steps": None, "wall_s": round(time.time() - t0, 2)}


def summarize(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    s = stats.summarise(vals)
    return {"median": s.median, "median_ci": list(s.median_ci), "iqm": s.iqm, "iqm_ci": list(s.iqm_ci),
            "min": s.min, "max": s.max, "n": s.n}


def run_task(task: tuple) -> dict[str, Any]:
    """One benchmark run (a Ray task or a plain call): ``("ppo", env, seed)`` or a learner run."""
    torch.set_num_threads(1)
    if task[0] == "ppo":
        _, env_id, seed = task
        return {"kind": "ppo", "env": env_id, **ppo_run(env_id, seed, float(make_env(env_id).spec.reward_threshold))}
    _, env_id, learner, teacher, seed, cap, stay, extra = task
    q_fn = expert_q_function(load_or_train_expert(env_id, log=lambda m: None))
    settings = LearnerSettings.for_learner(learner_class(learner), dict(extra)) if extra else None
    return {"kind": "learner", **one_run(env_id, learner, teacher, seed, q_fn,
                                         float(make_env(env_id).spec.reward_threshold), cap, stay, settings)}


def table(results: dict[str, Any]) -> str:
    lines = [f"{'env':<13} {'learner':<10} {'teacher':<8} {'solved [95% CI]':>18} {'answers IQM [95% CI]':>22} "
             f"{'median':>7} {'stays':>6} {'env steps med':>13} {'wall s med':>10} {'vs random':>10}"]
    for g in results["groups"]:
        a = g["answers"]
        ans = "-" if a["median"] is None else f"{a['iqm']:.0f} [{a['iqm_ci'][0]:.0f}, {a['iqm_ci'][1]:.0f}]"
        med = "-" if a["median"] is None else f"{a['median']:.0f}"
        st = g["env_steps"]["median"]
        wl = g["wall_s"]["median"]
        stays = f"{g['stays_solved']:>3}/{g['solved']:<2}" if g.get("stay_measured", True) else f"{'n/a':>6}"
        solved = f"{g['solved']}/{g['runs']} [{g['solved_ci'][0]:.2f}, {g['solved_ci'][1]:.2f}]"
        vs = g.get("vs_random_teacher")
        vs_s = "-" if vs is None else ("clears" if vs["counts"] else "no")
        lines.append(f"{g['env']:<13} {g['learner']:<10} {g['teacher']:<8} {solved:>18} "
                     f"{ans:>22} {med:>7} {stays} {'-' if st is None else f'{st:.0f}':>13} "
                     f"{'-' if wl is None else f'{wl:.1f}':>10} {vs_s:>10}")
    for p in results.get("ppo", []):
        s = p["env_steps"]["median"]
        w = p["wall_s"]["median"]
        lines.append(f"{p['env']:<13} {'SB3 PPO':<10} {'reward':<8} {p['solved']:>3}/{p['runs']:<2} "
                     f"{'(true reward, no answers)':>24} {'':>6} "
                     f"{'-' if s is None else f'{s:.0f}':>13} {'-' if w is None else f'{w:.1f}':>10}")
    return "\n".join(lines)


def group(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    keys = sorted({(r["env"], r["learner"], r["teacher"]) for r in rows},
                  key=lambda k: (k[0] != "CartPole-v1", LEARNERS.index(k[1]), TEACHERS.index(k[2])))
    for env_id, learner, teacher in keys:
        rs = [r for r in rows if (r["env"], r["learner"], r["teacher"]) == (env_id, learner, teacher)]
        solved = [r for r in rs if r["solved_at"] is not None]
        lo, hi = stats.wilson_interval(len(solved), len(rs))
        out.append({"env": env_id, "learner": learner, "teacher": teacher, "runs": len(rs), "solved": len(solved),
                    "seeds": sorted(r["seed"] for r in rs), "solved_ci": [lo, hi],
                    "stays_solved": sum(bool(r["stays_solved"]) for r in solved),
                    "stay_measured": any(r["checks_after"] for r in solved),
                    "best_check_mean": summarize(rs, "best_mean"),
                    "stay_pass_rate": summarize(solved, "stay_pass_rate"),
                    "answers": summarize(solved, "solved_at"), "env_steps": summarize(solved, "env_steps_at_solve"),
                    "wall_s": summarize(solved, "wall_s_at_solve"),
                    "cap_answers": CAP[learner] if env_id == "CartPole-v1" else HARD_CAP})
    for g in out:  # a row counts only where its solved-share interval clears its learner's random teacher
        ctrl = next((c for c in out if (c["env"], c["learner"], c["teacher"]) == (g["env"], g["learner"], "random")),
                    None)
        if ctrl is not None and g is not ctrl:
            g["vs_random_teacher"] = {"control_solved": f"{ctrl['solved']}/{ctrl['runs']}",
                                      "counts": stats.clears(tuple(g["solved_ci"]), tuple(ctrl["solved_ci"]))}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="2 seeds, TAMER only, no harder task, shorter stay check")
    p.add_argument("--learners", default=",".join(LEARNERS))
    p.add_argument("--teachers", default=",".join(TEACHERS))
    p.add_argument("--hard-seeds", type=int, default=5, help="seeds for the Acrobot-v1 rows (0 to skip)")
    p.add_argument("--ppo-seeds", type=int, default=None, help="seeds for SB3 PPO (default: --seeds)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--serial", action="store_true", help="run without Ray, one run after another")
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="learner settings for every run (an ablation, e.g. label_noise=0); default: the learners' own")
    args = p.parse_args(argv)
    extra = tuple(tuple(kv.split("=", 1)) for kv in args.set)
    torch.set_num_threads(1)
    learners = ["tamer"] if args.quick else args.learners.split(",")
    teachers = args.teachers.split(",")
    seeds = list(range(2 if args.quick else args.seeds))
    stay = 200 if args.quick else STAY_ANSWERS
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": "python benchmarks/evaluative.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": platform.platform(), "python": platform.python_version(), "torch_threads": 1,
        "criterion": "first check with mean true return >= threshold over 20 episodes, confirmed over 100",
        "stay": f"{stay} more answers, a 20-episode check every {STAY_EVERY}; stays solved if >= 90% pass",
        "seeds": seeds, "settings": dict(extra), "rows": [], "groups": [], "ppo": []}

    def save() -> None:
        results["groups"] = group(results["rows"])
        out.write_text(json.dumps(results, indent=1, default=float) + "\n")

    t_all = time.time()
    tasks: list[tuple] = []
    n_ppo = args.ppo_seeds if args.ppo_seeds is not None else len(seeds)
    tasks += [("ppo", "CartPole-v1", s) for s in range(n_ppo)]
    plan = [("CartPole-v1", learners, teachers, seeds)]
    if not args.quick and args.hard_seeds > 0:
        plan.append(("Acrobot-v1", ["tamer"], ["oracle", "random"], list(range(args.hard_seeds))))
    for env_id, ls, ts, ss in plan:
        load_or_train_expert(env_id, log=lambda m: print(m, flush=True))  # once, before the workers need it
        for learner in ls:
            for teacher in ts:
                for seed in ss:
                    tasks.append(("run", env_id, learner, teacher, seed,
                                  CAP[learner] if env_id == "CartPole-v1" else HARD_CAP,
                                  stay if env_id == "CartPole-v1" else 0, extra))
    ppo_rows: list[dict[str, Any]] = []

    def done(r: dict[str, Any]) -> None:
        if r.get("error"):
            results.setdefault("failed", []).append(r)
            print(f"FAILED {r['task']}: {r['error']}", flush=True)
            return
        if r["kind"] == "ppo":
            ppo_rows.append(r)
            solved = [x for x in ppo_rows if x["solved_at_env_steps"] is not None]
            results["ppo"] = [{"env": "CartPole-v1", "runs": len(ppo_rows), "solved": len(solved), "rows": ppo_rows,
                               "env_steps": summarize(solved, "solved_at_env_steps"),
                               "wall_s": summarize(solved, "wall_s")}]
            print(f"SB3 PPO seed {r['seed']}: solved at {r['solved_at_env_steps']} steps", flush=True)
        else:
            results["rows"].append(r)
            print(f"{r['env']} {r['learner']:<9} {r['teacher']:<8} seed {r['seed']}: solved at {r['solved_at']} "
                  f"answers ({r['env_steps_at_solve']} steps), stays {r['stays_solved']}, best {r['best_mean']:.0f}, "
                  f"{r['wall_s']:.0f}s", flush=True)
        save()

    results["engine"] = "serial" if args.serial else f"ray {args.address or f'local, {args.cpus or os.cpu_count()} cpus'}"
    map_tasks(run_task, tasks, serial=args.serial, address=args.address, cpus=args.cpus or os.cpu_count(),
              on_done=done, on_error=lambda t, e: {"task": list(t), "error": f"{type(e).__name__}: {e}"})
    results["total_wall_s"] = round(time.time() - t_all, 1)
    save()
    print(table(results))
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
