"""Benchmark: learning a person's trade-off weights from outcome comparisons, and the policy for them.

Part ``weights`` (per environment: deep-sea-treasure-v0 2 objectives, minecart-v0 3, fruit-tree-v0 6):
a fixed pool of outcomes (the true Pareto front and random-policy episodes, see :func:`outcome_set`);
then per seed, hidden weights drawn from a uniform Dirichlet and a simulated teacher answering
up to ``--budget`` questions. Rows: active selection (expected information gain) with the oracle; random
questions (the baseline); a Boltzmann-noisy teacher (beta 10); a teacher ignoring objective 0 (scored
against the weights it really answers by); and the random-teacher control. Reported: questions after
which the posterior mean's cosine to the hidden weights stays at or above 0.95 and 0.99 to the end of the
budget (budget + 1 when it does not), the cosine after the budget, and the prior's cosine (0 questions), which says how much of 0.95 is free.

Part ``policy`` (deep-sea-treasure-v0): the whole job (``train_tradeoff``) with the oracle, per seed:
utility ratio of the final policy against SB3 trained from scratch on the hidden weights in the same
run, Pareto coverage (hypervolume of the set found over the true front's 401.8, reference (0, -25)),
and the wall-clock of the whole loop beside that single true-weights training.

    python benchmarks/tradeoff.py [--part weights|policy|all] [--seeds 5] [--budget 30] [--envs ...]
        [--policy-timesteps 20000]

Writes ``benchmarks/results/tradeoff.json`` after every row (a cut-short run keeps its rows, marked).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhf_gym.feedback.teachers_tradeoff import SimulatedTradeoffTeacher
from rlhf_gym.learners.tradeoff import learn_weights
from rlhf_gym.morl import policies as P
from rlhf_gym.morl.envs import make_vector_env, n_objectives, objective_names
from rlhf_gym.morl.weights import WeightPosterior, cosine, outcome_scale

RESULTS = Path(__file__).parent / "results" / "tradeoff.json"
ENVS = ("deep-sea-treasure-v0", "minecart-v0", "fruit-tree-v0")
ROWS = {  # name -> (selection, teacher kind)
    "active (info gain), oracle": ("info", "oracle"),
    "random questions, oracle": ("random", "oracle"),
    "active, noisy teacher (beta 10)": ("info", "noisy"),
    "active, teacher ignores objective 0": ("info", "ignore"),
    "active, random teacher (control)": ("info", "random"),
}
DST_TRUE_HV = 401.8
DST = "deep-sea-treasure-v0"
DST_REF = (0.0, -25.0)


def outcome_set(env_id: str, random_episodes: int = 40) -> tuple[np.ndarray, dict[str, Any]]:
    """Outcomes to ask about: the environment's true Pareto front (MO-Gymnasium's ``pareto_front``) and
    ``random_episodes`` episodes of a uniformly random policy (dominated outcomes, also informative).

    The job itself asks about its trained policies' episodes; this part uses a fixed pool so the question
    rows cost seconds (training a sweep per environment does not fit the shared 2-core machine).
    """
    from rlhf_gym.jobs.tradeoff import _random_policy, _true_front

    t0 = time.time()
    env = make_vector_env(env_id)
    k, names = n_objectives(env), objective_names(env_id, env)
    env.close()
    front = _true_front(env_id)
    rand = P.objective_returns(env_id, _random_policy(env_id, 0), random_episodes, seed=20_000)
    pool = np.unique(np.concatenate([front if front is not None else np.zeros((0, k)), rand]).round(6), axis=0)
    return pool, {"objectives": list(names), "front_points": 0 if front is None else len(front),
                  "random_episodes": random_episodes, "outcomes": len(pool), "pool_s": time.time() - t0}


def weight_row(outcomes: np.ndarray, selection: str, teacher: str, seed: int, budget: int) -> dict[str, Any]:
    k = outcomes.shape[1]
    w = np.random.default_rng([seed, 1]).dirichlet(np.ones(k))
    trng = np.random.default_rng([seed, 2])
    src = SimulatedTradeoffTeacher(w, trng, beta=10.0 if teacher == "noisy" else None, random=teacher == "random",
                                   ignore=0 if teacher == "ignore" else None)
    target = src.answering_weights / src.answering_weights.sum() if teacher == "ignore" else w
    scale = outcome_scale(outcomes)

    def make() -> WeightPosterior:
        return WeightPosterior(k, scale, n_samples=4000, rng=np.random.default_rng([seed, 3]))

    cos: list[float] = []
    t0 = time.time()
    learn_weights(src, outcomes, make, budget, selection, np.random.default_rng([seed, 4]),
                  on_answer=lambda _t, r: cos.append(cosine(r.posterior.mean, target)))
    # questions after which the cosine stays at or above the bar for the rest of the budget
    first = {bar: next((i + 1 for i in range(len(cos)) if min(cos[i:]) >= bar), budget + 1) for bar in (0.95, 0.99)}
    return {"seed": seed, "hidden_weights": w.tolist(), "target_weights": target.tolist(),
            "prior_cosine": cosine(np.full(k, 1 / k), target), "q_to_095": first[0.95], "q_to_099": first[0.99],
            "final_cosine": cos[-1] if cos else None, "cosine_curve": [round(c, 4) for c in cos],
            "wall_s": time.time() - t0}


def policy_run(seed: int, budget: int, workdir: Path, policy_timesteps: int) -> dict[str, Any]:
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.jobs.tradeoff import train_tradeoff
    from rlhf_gym.pipeline import evaluate_run

    w = np.random.default_rng([seed, 1]).dirichlet(np.ones(2))
    out = workdir / f"dst-{seed}"
    cfg = TrainConfig(env="deep-sea-treasure-v0", feedback="tradeoff", teacher="oracle", budget=budget, seed=seed,
                      out=str(out), eval_episodes=5, progress=False,
                      extra={"teacher_weights": ",".join(f"{x:.6f}" for x in w), "policy_timesteps": policy_timesteps})
    res = train_tradeoff(cfg)
    ev = evaluate_run(out, episodes=5)
    if seed == 0:  # the README's figure: the front found, with the learned weights' pick
        import shutil

        shutil.copy(out / "front.png", RESULTS.parent / "tradeoff_front.png")
    hv = P.hypervolume_2d(np.array(res["pareto_front"]), (0.0, -25.0))
    return {"seed": seed, "hidden_weights": w.tolist(), "learned_weights": res["learned_weights"],
            "weights_cosine": ev["weights_cosine"], "utility_ratio": ev["utility_ratio"],
            "utility": ev["utility"], "reference_utility": ev["reference_utility"], "random_utility": ev["random_utility"],
            "objective_returns": ev["objective_returns"], "hypervolume": hv, "coverage": hv / DST_TRUE_HV,
            "front": res["pareto_front"], "loop_wall_s": res["wall_s"] - (res["reference_train_s"] or 0.0),
            "reference_train_s": res["reference_train_s"], "set_s": res["set_s"], "questions_s": res["questions_s"],
            "final_s": res["final_s"]}


def pareto_run(seed: int, method: str, workdir: Path, policy_timesteps: int, n_policies: int = 11) -> dict[str, Any]:
    """One policy set on deep-sea-treasure by ``method`` (``ols`` or ``sweep``): its hypervolume over the
    true front's, the policies trained (OLS may stop early) and the wall-clock."""
    t0 = time.time()
    names = ("treasure", "time")
    out = workdir / f"pareto-{method}-{seed}"
    if method == "ols":
        ps = P.build_pareto_set_ols(DST, names, n_policies, policy_timesteps, out, seed=seed,
                                    rng=np.random.default_rng([seed, 7]), log=lambda _m: None)
    else:
        ps = P.build_pareto_set(DST, names, P.weight_grid(2, n_policies), policy_timesteps, out, seed=seed,
                                log=lambda _m: None)
    hv = P.hypervolume_2d(ps.front(), DST_REF)
    return {"seed": seed, "method": method, "hypervolume": hv, "coverage": hv / DST_TRUE_HV,
            "policies": len(ps.entries), "front": ps.front().tolist(),
            "weights": [e.weights for e in ps.entries], "wall_s": time.time() - t0}


def exact_solver_coverage(n_policies: int = 11) -> dict[str, Any]:
    """The same weight choices with a perfect solver (each weight's best point of the true front, no RL):
    how much of the gap is the weight choice's and how much the RL's."""
    from rlhf_gym.jobs.tradeoff import _true_front
    from rlhf_gym.morl.ols import next_weight

    tf = _true_front(DST)
    assert tf is not None
    sweep = [tf[np.argmax(tf @ w)] for w in P.weight_grid(2, n_policies)]
    found: list[np.ndarray] = []
    trained: list[np.ndarray] = []
    for _ in range(n_policies):
        w, _gain = next_weight(np.array(found) if found else np.zeros((1, 2)), trained)
        if w is None:
            break
        found.append(tf[np.argmax(tf @ w)])
        trained.append(w)
    return {m: {"coverage": P.hypervolume_2d(np.array(v), DST_REF) / DST_TRUE_HV, "policies": len(v)}
            for m, v in (("sweep", sweep), ("ols", found))}


def _med(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("weights", "pareto", "policy", "all"), default="all")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--policy-budget", type=int, default=15)
    ap.add_argument("--envs", nargs="*", default=list(ENVS))
    ap.add_argument("--policy-timesteps", type=int, default=20_000)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    doc: dict[str, Any] = {"command": " ".join(sys.argv), "seeds": args.seeds, "budget": args.budget,
                           "machine": platform.platform(), "complete": False, "weights": {}, "policy": None}
    if RESULTS.exists():  # keep the other part's numbers when only one part is rerun
        old = json.loads(RESULTS.read_text())
        for part, keys in (("weights", ("weights", "weights_command")), ("pareto", ("pareto", "pareto_command")),
                           ("policy", ("policy", "policy_command"))):
            if args.part not in (part, "all"):
                for key in keys:
                    doc[key] = old.get(key, doc.get(key))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        RESULTS.write_text(json.dumps(doc, indent=1) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.part in ("weights", "all"):
            doc["weights_command"] = doc["command"]
            for env_id in args.envs:
                outcomes, meta = outcome_set(env_id)
                entry: dict[str, Any] = {**meta, "rows": {}}
                doc["weights"][env_id] = entry
                for row, (sel, teacher) in ROWS.items():
                    runs = [weight_row(outcomes, sel, teacher, s, args.budget) for s in range(args.seeds)]
                    entry["rows"][row] = {"runs": runs, "median_q_to_095": _med([r["q_to_095"] for r in runs]),
                                          "median_q_to_099": _med([r["q_to_099"] for r in runs]),
                                          "reached_095": sum(r["q_to_095"] <= args.budget for r in runs),
                                          "mean_q_to_095": float(np.mean([r["q_to_095"] for r in runs])),
                                          "median_final_cosine": _med([r["final_cosine"] for r in runs]),
                                          "median_prior_cosine": _med([r["prior_cosine"] for r in runs])}
                    save()
        if args.part in ("pareto", "all"):
            doc["pareto_command"] = doc["command"]
            doc["pareto"] = {"env": DST, "policy_timesteps": args.policy_timesteps, "n_policies": 11,
                             "true_hypervolume": DST_TRUE_HV, "reference_point": list(DST_REF),
                             "exact_solver": exact_solver_coverage(), "rows": {}}
            for method in ("ols", "sweep"):
                runs = []
                doc["pareto"]["rows"][method] = {"runs": runs}
                for s in range(args.seeds):
                    runs.append(pareto_run(s, method, work, args.policy_timesteps))
                    doc["pareto"]["rows"][method].update(
                        {f"{k}_{stat}": f(r[k] for r in runs) for k in ("coverage", "hypervolume", "wall_s", "policies")
                         for stat, f in (("median", lambda x: _med(list(x))), ("min", min), ("max", max))},
                        reached_095=sum(r["coverage"] >= 0.95 for r in runs))
                    save()
        if args.part in ("policy", "all"):
            runs = []
            doc["policy_command"] = doc["command"]
            doc["policy"] = {"env": "deep-sea-treasure-v0", "budget": args.policy_budget,
                             "policy_timesteps": args.policy_timesteps, "runs": runs}
            for s in range(args.seeds):
                runs.append(policy_run(s, args.policy_budget, work, args.policy_timesteps))
                doc["policy"].update({k: _med([r[k] for r in runs if r[k] is not None]) for k in (
                    "utility_ratio", "coverage", "weights_cosine", "loop_wall_s", "reference_train_s")})
                doc["policy"]["seeds_run"] = len(runs)
                save()
    doc["complete"] = True
    save()
    print_table(doc)
    return 0


def print_table(doc: dict[str, Any]) -> None:
    b = doc["budget"]
    print(f"\nquestions until cosine stays >= 0.95 / 0.99 (median over seeds; {b + 1} = not within {b}), final cosine")
    print(f"{'env':22} {'row':38} {'q>=.95':>7} {'q>=.99':>7} {'reached':>8} {'final':>6} {'prior':>6}")
    for env_id, e in doc["weights"].items():
        for row, r in e["rows"].items():
            print(f"{env_id:22} {row:38} {r['median_q_to_095']:7.1f} {r['median_q_to_099']:7.1f} "
                  f"{r['reached_095']:>4}/{len(r['runs']):<3} {r['median_final_cosine']:6.3f} {r['median_prior_cosine']:6.3f}")
    pa = doc.get("pareto")
    if pa:
        print(f"\nPareto coverage on {pa['env']} (hypervolume / {pa['true_hypervolume']}, reference "
              f"{tuple(pa['reference_point'])}; up to {pa['n_policies']} PPO policies of {pa['policy_timesteps']} steps):")
        print(f"{'method':8} {'median':>7} {'[min, max]':>16} {'>= 0.95':>8} {'policies':>9} {'wall s':>7} {'exact solver':>13}")
        for m, r in pa["rows"].items():
            ex = pa["exact_solver"][m]["coverage"]
            print(f"{m:8} {r['coverage_median']:7.3f} [{r['coverage_min']:.3f}, {r['coverage_max']:.3f}] "
                  f"{r['reached_095']:>4}/{len(r['runs']):<3} {r['policies_median']:9.0f} {r['wall_s_median']:7.0f} {ex:13.3f}")
    p = doc.get("policy")
    if p:
        print(f"\ndeep-sea-treasure-v0, whole loop, oracle, {p['budget']} questions ({p.get('seeds_run', 0)} seeds, medians):")
        print(f"  utility ratio vs SB3 on the hidden weights: {p['utility_ratio']:.3f}   Pareto coverage (HV / 401.8): "
              f"{p['coverage']:.3f}   cosine: {p['weights_cosine']:.3f}")
        print(f"  wall-clock: whole loop {p['loop_wall_s']:.0f} s, SB3 on the true weights alone {p['reference_train_s']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
