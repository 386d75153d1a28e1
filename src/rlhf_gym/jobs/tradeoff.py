"""The trade-off run job: a Pareto set of policies, questions about their outcomes, a posterior over the
person's weights, and the policy for the learned weights.

Run folder (besides config.json, feedback.db, metrics.csv/jsonl, policy.json/policy.zip)::

    DIR/pareto/policy-XX.zip   the weight sweep's policies
    DIR/pareto_set.json        weights and per-objective returns of each, and the non-dominated front
    DIR/posterior.json         pooled posterior (mean, covariance, samples), per-annotator ones, the rule used
    DIR/tradeoff.json          objectives, learned weights, the pick, hidden weights (simulated teachers),
                               the random policy's returns, the reference policy (trained with the hidden weights)
    DIR/front.png              the front with the learned weights' pick and the final policy marked
    DIR/reference_policy.zip   (simulated teachers) the policy trained with the hidden weights
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_gym.config import TrainConfig
from rlhf_gym.morl.annotators import aggregate_weights, parse_aggregate
from rlhf_gym.morl.weights import SELECTIONS, WeightPosterior, cosine, outcome_scale
from rlhf_gym.runs import RunDir

PARETO_METHODS = ("ols", "sweep")


@dataclass(frozen=True)
class TradeoffSettings:
    """``--set`` keys of the trade-off job (the same defaults for every task)."""

    pareto: str = "ols"
    """How the policy set's weights are chosen: ols (optimistic linear support: each next policy at the
    corner weight where the set can improve the most, fine-tuned from the set's best policy there) or
    sweep (a fixed grid of weights, each policy from scratch)."""
    n_policies: int | None = None
    """Policies in the set (OLS may stop sooner, when no corner can improve); default 4 * objectives + 3."""
    policy_timesteps: int = 20_000
    """SB3 steps per policy of the sweep."""
    archive_checkpoints: int = 10
    """Checkpoints per policy screened for the set's archive (:mod:`rlhf_gym.morl.policies`); 0 = only the
    final policies."""
    final_timesteps: int | None = None
    """SB3 steps fine-tuning the picked policy on the learned weights (default: policy_timesteps)."""
    policy_algo: str = "ppo"
    outcomes_per_policy: int = 6
    """Episodes rolled out per policy (greedy and epsilon-random) as outcomes to ask about."""
    selection: str = "info"
    """Next question: info (expected information gain), volume (volume removal) or random."""
    model_beta: float | str = 20.0
    """Rationality the weight model assumes of the person (on range-normalised utilities), or ``learn``
    (inferred with the weights, log-uniform prior on 1..100)."""
    n_samples: int = 4000
    """Posterior particles."""
    aggregate: str = "pooled"
    """Several annotators (:mod:`rlhf_gym.morl.annotators`): pooled (all answers in one posterior), mean
    (each person's posterior mean, averaged: everyone counts equally), per_annotator (also a policy for
    each person's own weights), one annotator's id (their weights), or a stated rule ``alice:2,bob:1``."""
    reference: bool = True
    """With a simulated teacher's hidden weights: train the policy for them too (for utility_ratio)."""
    answer_timeout: float | None = None
    """Seconds to wait for a person's answer (None: until it comes)."""

    def __post_init__(self) -> None:
        if self.pareto not in PARETO_METHODS:
            raise ValueError(f"pareto must be one of {', '.join(PARETO_METHODS)}, got {self.pareto!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.policy_algo not in ("ppo", "dqn"):
            raise ValueError(f"policy_algo must be ppo or dqn, got {self.policy_algo!r}")
        for name in ("policy_timesteps", "outcomes_per_policy", "n_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_policies is not None and self.n_policies < 2:
            raise ValueError(f"n_policies must be >= 2 (a trade-off needs choices), got {self.n_policies}")
        if int(self.archive_checkpoints) < 0:
            raise ValueError(f"archive_checkpoints must be >= 0, got {self.archive_checkpoints}")
        if self.final_timesteps is not None and self.final_timesteps < 0:
            raise ValueError(f"final_timesteps must be >= 0, got {self.final_timesteps}")
        if self.model_beta != "learn" and not (isinstance(self.model_beta, int | float) and self.model_beta > 0):
            raise ValueError(f"model_beta must be a number > 0 or 'learn', got {self.model_beta!r}")

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> TradeoffSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in extra.items() if k in names})


def train_tradeoff(cfg: TrainConfig) -> dict[str, Any]:
    """Learn the teacher's trade-off weights from outcome comparisons and train the policy for them."""
    from rlhf_gym.config import WEIGHTING_SETTINGS, check_settings
    from rlhf_gym.feedback.registry import teacher_settings
    from rlhf_gym.runtime import torch_threads

    cfg.validate()
    # the weighting keys are accepted (the CLI adds them from rlhf-gym.toml) but not applied to trade-offs yet
    check_settings(cfg.extra, (*(f.name for f in fields(TradeoffSettings)), *WEIGHTING_SETTINGS,
                               *teacher_settings("tradeoff", cfg.teacher)),
                   f"--feedback tradeoff --teacher {cfg.teacher}")
    st = TradeoffSettings.from_extra(cfg.extra)
    with torch_threads(cfg.threads):
        return _train_tradeoff(cfg, st)


def _train_tradeoff(cfg: TrainConfig, st: TradeoffSettings) -> dict[str, Any]:
    from rlhf_gym.feedback.registry import is_person
    from rlhf_gym.feedback.teachers_tradeoff import PopulationSource, SimulatedTradeoffTeacher
    from rlhf_gym.jobs import teacher_for
    from rlhf_gym.learners.tradeoff import answered_outcomes, learn_weights, posterior_from
    from rlhf_gym.morl import policies as P
    from rlhf_gym.morl.envs import make_vector_env, n_objectives, objective_names
    from rlhf_gym.runs import MetricsLogger
    from rlhf_gym.store import FeedbackStore

    t_start = time.time()
    probe = make_vector_env(cfg.env)  # EnvError (exit 2) for a scalar-reward or unknown environment
    k, names = n_objectives(probe), objective_names(cfg.env, probe)
    discrete = hasattr(probe.action_space, "n")
    probe.close()
    if st.policy_algo == "dqn" and not discrete:
        raise ValueError(f"policy_algo dqn needs discrete actions; {cfg.env} has continuous ones (use ppo)")
    if "teacher_weights" in cfg.extra:  # checked before any training: wrong length is a usage error
        from rlhf_gym.feedback.teachers_tradeoff import parse_weights

        parse_weights(cfg.extra["teacher_weights"], k)
    parse_aggregate(st.aggregate)  # a malformed rule is a usage error before any training

    from rlhf_gym.devices import resolve_device

    device = resolve_device(cfg.device)  # where SB3 trains the set, the fine-tune and the reference
    run = RunDir(cfg.out)
    run.save_config(cfg, resolved_device=device)
    store = FeedbackStore(cfg.db or run.db_path)
    run_id = store.add_run(f"run-{Path(cfg.out).resolve().name}-{int(time.time())}", asdict(cfg))
    logger = MetricsLogger(run, tensorboard=False)
    log = print
    try:
        source = teacher_for(cfg, store, run_id, run.path, settings={**cfg.extra, "n_objectives": k})
        hidden: dict[str, list[float]] = {}
        if isinstance(source, SimulatedTradeoffTeacher) and not source.random:
            hidden = {source.annotator_id: source.weights.tolist()}
        elif isinstance(source, PopulationSource):
            hidden = source.hidden_weights
        true_w = np.array(next(iter(hidden.values()))) if len(hidden) == 1 else None

        # 1. the policy set (a weight sweep) and the outcomes to ask about
        t0 = time.time()
        n_pol = st.n_policies or 4 * k + 3
        how = "optimistic linear support" if st.pareto == "ols" else "a weight sweep"
        log(f"training up to {n_pol} policies on scalarised rewards by {how} ({st.policy_algo}, "
            f"{st.policy_timesteps} steps each)")
        set_args: dict[str, Any] = {"seed": cfg.seed, "algo": st.policy_algo, "log": log,
                                    "eval_episodes": min(cfg.eval_episodes, 5), "device": device,
                                    "checkpoints": st.archive_checkpoints}
        if st.pareto == "ols":
            pset = P.build_pareto_set_ols(cfg.env, names, n_pol, st.policy_timesteps, run.file("pareto"),
                                          rng=np.random.default_rng([cfg.seed, 7]), **set_args)
        else:
            grid = P.weight_grid(k, n_pol, np.random.default_rng([cfg.seed, 7]))
            pset = P.build_pareto_set(cfg.env, names, grid, st.policy_timesteps, run.file("pareto"), **set_args)
        n_pol = len(pset.entries)
        from rlhf_gym.learners.sb3_policy import _algo_class

        # loaded only to act (sample outcomes): on the CPU, where one observation a step is cheapest
        models = [_algo_class(st.policy_algo).load(str(run.file("pareto") / e.path), device="cpu")
                  for e in pset.entries]
        pool = P.sample_outcomes(cfg.env, models, st.outcomes_per_policy, np.random.default_rng([cfg.seed, 8]))
        outcomes = np.stack([o.returns for o in pool])
        if len(outcomes) < 2:
            raise RuntimeError(f"the policies of {cfg.env} produced a single distinct outcome: nothing to compare")
        set_s = time.time() - t0
        run.file("pareto_set.json").write_text(json.dumps({**pset.to_dict(), "method": st.pareto,
                                                            "outcomes": outcomes.tolist()}, indent=1))

        # 2. questions and the posterior
        scale = outcome_scale(outcomes)

        def make_post(seed_key: int = 0) -> WeightPosterior:
            return WeightPosterior(k, scale, beta=None if st.model_beta == "learn" else float(st.model_beta),
                                   n_samples=st.n_samples,
                                   rng=np.random.default_rng([cfg.seed, 9, seed_key]))

        def on_answer(t: int, res: Any) -> None:
            m = res.posterior.mean
            row: dict[str, Any] = {"questions": t, "answers": len(res.answers),
                                   "posterior_sd": float(np.sqrt(np.trace(res.posterior.cov))), "ess": res.posterior.ess,
                                   **{f"w_{i}": float(x) for i, x in enumerate(m)}}
            if true_w is not None:
                row["weights_cosine"] = cosine(m, true_w)
            logger.log(t, **row)

        clips: dict[int, str | None] = {}

        def clip(i: int) -> str | None:  # a person sees a clip of each outcome (rendered when first asked)
            if i not in clips:
                p = P.render_outcome(cfg.env, pool[i], run.file("clips") / f"outcome-{i:03d}.gif")
                clips[i] = str(p) if p is not None else None
            return clips[i]

        # a person at this terminal sees GIFs written here; the web app replays each episode from its seed
        # and actions (sent with the query) on the server's own renderer
        web = cfg.teacher == "web"
        local_person = is_person("tradeoff", cfg.teacher) and not web
        if local_person:
            run.file("clips").mkdir(exist_ok=True)

        def meta(i: int) -> dict[str, Any]:
            m: dict[str, Any] = {"policy": pool[i].policy, "seed": pool[i].seed, "epsilon": pool[i].epsilon}
            if web:
                m["actions"] = list(pool[i].actions)
            return m

        t0 = time.time()
        res = learn_weights(source, outcomes, make_post, cfg.budget, st.selection,
                            np.random.default_rng([cfg.seed, 10]), names, run_id, store, meta=meta,
                            timeout=st.answer_timeout, on_answer=on_answer, clip=clip if local_person else None)
        source.close()
        ask_s = time.time() - t0
        answers = answered_outcomes(store, run_id)  # the store's view: withdrawals honoured
        pooled = posterior_from(answers, make_post)
        per: dict[str, WeightPosterior] = {}
        for aid in dict.fromkeys(fb.annotator_id for _, fb in answers):
            per[aid] = posterior_from([(q, fb) for q, fb in answers if fb.annotator_id == aid],
                                      lambda: make_post(1 + len(per)))
        spread = {f"{a}|{b}": round(1 - cosine(per[a].mean, per[b].mean), 4)
                  for ai, a in enumerate(per) for b in list(per)[ai + 1:]}
        try:
            learned = _aggregate(str(st.aggregate), pooled, per)
        finally:  # the posteriors are kept even when the aggregation rule names nobody who answered
            run.file("posterior.json").write_text(json.dumps({
                "aggregate": st.aggregate, "pooled": pooled.to_dict(names),
                "per_annotator": {a: p.to_dict(names, n_keep=100) for a, p in per.items()},
                "cosine_distance_between_annotators": spread}, indent=1))
        run.file("posterior.json").write_text(json.dumps({
            "aggregate": st.aggregate, "learned_weights": learned.tolist(), "pooled": pooled.to_dict(names),
            "per_annotator": {a: p.to_dict(names, n_keep=100) for a, p in per.items()},
            "cosine_distance_between_annotators": spread}, indent=1))

        # 3. the policy for the learned weights: the set's best, fine-tuned on them
        t0 = time.time()
        final_steps = st.policy_timesteps if st.final_timesteps is None else st.final_timesteps
        final, pick, final_info = _policy_for(cfg, st, pset, run, learned, final_steps, "policy.zip", device)
        run.save_policy_info("sb3", "policy.zip", algo=st.policy_algo, discrete=discrete)
        store.record_model(run.file("policy.zip"), [fb.id for _, fb in answers if fb.id is not None], kind="policy",
                           run_id=run_id)
        per_policies: dict[str, Any] = {}
        if str(st.aggregate) == "per_annotator":  # no aggregation: each person's own policy as well
            for i, (aid, p) in enumerate(per.items()):
                name = f"policy-{i:02d}.zip"
                _, pk, pinfo = _policy_for(cfg, st, pset, run, p.mean, final_steps, name, device)
                per_policies[aid] = {"path": name, "weights": p.mean.tolist(), "pick": pk, "final": pinfo}
                store.record_model(run.file(name), [fb.id for _, fb in answers if fb.annotator_id == aid and fb.id],
                                   kind="policy", run_id=run_id)
        final_s = time.time() - t0
        ref: dict[str, Any] | None = None
        if true_w is not None and st.reference:
            # the comparison: SB3 trained from scratch on the hidden weights, as many steps as the pick + fine-tune
            t0 = time.time()
            ref_model = P.train_policy(cfg.env, true_w, st.policy_timesteps + final_steps, seed=cfg.seed,
                                       algo=st.policy_algo, device=device)
            ref_model.save(str(run.file("reference_policy.zip")))
            ref = {"path": "reference_policy.zip", "timesteps": st.policy_timesteps + final_steps,
                   "train_s": time.time() - t0}
        random_rets = P.objective_returns(cfg.env, _random_policy(cfg.env, cfg.seed), cfg.eval_episodes).mean(0)
        rets = P.objective_returns(cfg.env, P.act_fn(final, discrete), cfg.eval_episodes)
        info = {"env": cfg.env, "objectives": list(names), "learned_weights": learned.tolist(),
                "hidden_weights": hidden, "true_weights": None if true_w is None else true_w.tolist(),
                "pick": pick, "final": final_info, "random_policy_returns": random_rets.tolist(),
                "reference": ref, "per_annotator_policies": per_policies, "algo": st.policy_algo, "selection": st.selection, "outcomes": len(outcomes)}
        run.file("tradeoff.json").write_text(json.dumps(info, indent=1))
        plot_front(pset, outcomes, names, run.file("front.png"), learned, pick, rets.mean(0),
                   true_front=_true_front(cfg.env), title=f"{cfg.env}: policies found and the learned pick")
        u = rets @ learned
        result: dict[str, Any] = {
            "mean_return": float(u.mean()), "std_return": float(u.std()), "episodes": int(cfg.eval_episodes),
            "feedback_used": len(answers), "asked": res.asked, "stopped": res.stopped, "run_id": run_id,
            "objective_returns": rets.mean(0).tolist(), "learned_weights": learned.tolist(),
            "posterior_sd": float(np.sqrt(np.trace(pooled.cov))), "pareto_front": pset.front().tolist(),
            "n_policies": n_pol, "outcomes": len(outcomes), "posterior_rebuilt": res.rebuilt,
            "set_s": set_s, "questions_s": ask_s, "final_s": final_s, "wall_s": time.time() - t_start,
            "reference_train_s": ref["train_s"] if ref else None, "annotator_weights": {a: p.mean.tolist() for a, p in per.items()},
            "annotator_spread": spread, "device": device,
        }
        if true_w is not None:
            result["weights_cosine"] = cosine(learned, true_w)
        logger.log(cfg.budget, final=True, utility=result["mean_return"],
                   **({"weights_cosine": result["weights_cosine"]} if true_w is not None else {}))
        return result
    finally:
        logger.close()
        store.close()


def _aggregate(rule: str, pooled: WeightPosterior, per: dict[str, WeightPosterior]) -> np.ndarray:
    return aggregate_weights(rule, pooled.mean, {a: p.mean for a, p in per.items()})


def _policy_for(cfg: TrainConfig, st: TradeoffSettings, pset: Any, run: RunDir, weights: np.ndarray,
                steps: int, name: str, device: str) -> tuple[Any, int, dict[str, Any]]:
    """The set's best policy for ``weights``, fine-tuned on them (on ``device``); whichever of the two scores
    higher under ``weights`` (on episodes apart from evaluation's) is saved as ``name``."""
    from rlhf_gym.learners.sb3_policy import _algo_class
    from rlhf_gym.morl import policies as P

    pick = pset.best_for(weights)
    src = run.file("pareto") / pset.entries[pick].path
    picked = _algo_class(st.policy_algo).load(str(src), device="cpu")  # only acts (and may be saved as it is)
    info: dict[str, Any] = {"picked_returns": pset.entries[pick].returns, "fine_tuned": False}
    best = picked
    if steps > 0:
        tuned = P.train_policy(cfg.env, weights, steps, seed=cfg.seed + 1000, algo=st.policy_algo, init=src,
                               device=device)
        n = min(cfg.eval_episodes, 5)
        u_pick = float((P.objective_returns(cfg.env, P.act_fn(picked), n, seed=30_000) @ weights).mean())
        u_tuned = float((P.objective_returns(cfg.env, P.act_fn(tuned), n, seed=30_000) @ weights).mean())
        info.update(picked_utility=u_pick, fine_tuned_utility=u_tuned)
        if u_tuned >= u_pick:
            best, info["fine_tuned"] = tuned, True
    best.save(str(run.file(name)))
    return best, pick, info


def _random_policy(env_id: str, seed: int) -> Any:
    from rlhf_gym.morl.envs import make_vector_env

    env = make_vector_env(env_id, seed=seed)
    space = env.action_space
    return lambda _obs: space.sample()


def _true_front(env_id: str) -> np.ndarray | None:
    """The environment's known Pareto front (MO-Gymnasium's ``pareto_front``), where it has one."""
    from rlhf_gym.morl.envs import make_vector_env

    env = make_vector_env(env_id)
    try:
        pf = getattr(env.unwrapped, "pareto_front", None)
        return None if pf is None else np.asarray(pf(gamma=1.0), float)
    except Exception:  # not every environment can compute it
        return None
    finally:
        env.close()


def plot_front(pset: Any, outcomes: np.ndarray, names: Any, path: Path, learned: np.ndarray, pick: int,
               final: np.ndarray, true_front: np.ndarray | None = None, title: str = "") -> Path:
    """2 objectives: the outcomes, the set's returns, the true front, the pick and the final policy in the
    plane. More: each policy's returns across the objectives (parallel coordinates), the pick in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rets = pset.returns
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    if rets.shape[1] == 2:
        ax.scatter(outcomes[:, 0], outcomes[:, 1], s=10, c="lightgrey", label="outcomes asked about")
        if true_front is not None and true_front.shape[1] == 2:
            tf = true_front[np.argsort(true_front[:, 0])]
            ax.plot(tf[:, 0], tf[:, 1], "k--", lw=1, marker="x", ms=5, label="true Pareto front")
        ax.scatter(rets[:, 0], rets[:, 1], s=40, c="tab:blue", label="policies of the sweep")
        ax.scatter([rets[pick, 0]], [rets[pick, 1]], s=160, facecolors="none", edgecolors="tab:red", lw=2,
                   label=f"pick for learned w={np.round(learned, 2).tolist()}")
        ax.scatter([final[0]], [final[1]], marker="*", s=160, c="tab:red", label="final policy")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    else:
        x = np.arange(rets.shape[1])
        lo, hi = outcomes.min(0), outcomes.max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        for i, r in enumerate(rets):
            ax.plot(x, (r - lo) / span, color="tab:blue", alpha=0.35, lw=1, label="policies of the sweep" if i == 0 else None)
        ax.plot(x, (rets[pick] - lo) / span, color="tab:red", lw=2.5, label=f"pick for learned w={np.round(learned, 2).tolist()}")
        ax.plot(x, (final - lo) / span, "r*--", lw=1, ms=10, label="final policy")
        ax.set_xticks(x, list(names), rotation=20)
        ax.set_ylabel("return (scaled to the outcomes' range)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def evaluate_tradeoff(run: RunDir, episodes: int = 20, seed: int = 10_000) -> dict[str, Any]:
    """``evaluate`` for a trade-off run: per-objective returns, the learned weights, and for a simulated
    teacher the cosine to its hidden weights and the utility ratio.

    ``mean_return`` is the utility under the learned weights. ``utility_ratio`` is
    ``(U(policy) - U(random)) / (U(reference) - U(random))`` under the hidden weights, the reference
    being the policy trained with the hidden weights and U(random) a uniformly random policy's (utilities
    can be negative, so a plain quotient would not mean "fraction of the best").
    """
    from rlhf_gym.learners.sb3_policy import load_sb3_policy
    from rlhf_gym.morl import policies as P

    cfg = run.config()
    info = json.loads(run.file("tradeoff.json").read_text())
    learned = np.asarray(info["learned_weights"], float)
    rets = P.objective_returns(cfg["env"], run.load_policy(), episodes, seed=seed)
    u = rets @ learned
    out: dict[str, Any] = {"env": cfg["env"], "mean_return": float(u.mean()), "std_return": float(u.std()),
                           "episodes": int(episodes), "min_return": float(u.min()), "max_return": float(u.max()),
                           "objectives": info["objectives"], "objective_returns": rets.mean(0).tolist(),
                           "learned_weights": learned.tolist()}
    hidden = info.get("hidden_weights") or {}
    if len(hidden) > 1 and run.file("posterior.json").exists():  # a population: each annotator's recovery
        per = json.loads(run.file("posterior.json").read_text()).get("per_annotator", {})
        out["annotator_weights_cosine"] = {a: cosine(per[a]["mean"], w) for a, w in hidden.items() if a in per}
    true_w = info.get("true_weights")
    if true_w is not None:
        w = np.asarray(true_w, float)
        out["hidden_weights"] = w.tolist()
        out["weights_cosine"] = cosine(learned, w)
        out["utility"] = float((rets @ w).mean())
        ref = info.get("reference")
        if ref is not None:
            pinfo = json.loads(run.file("policy.json").read_text())
            ref_pol = load_sb3_policy(run.path, {**pinfo, "path": ref["path"]})
            u_ref = float((P.objective_returns(cfg["env"], ref_pol, episodes, seed=seed) @ w).mean())
            u_rand = float(np.asarray(info["random_policy_returns"], float) @ w)
            out["reference_utility"] = u_ref
            out["random_utility"] = u_rand
            out["utility_ratio"] = (out["utility"] - u_rand) / (u_ref - u_rand) if u_ref != u_rand else None
    return out
