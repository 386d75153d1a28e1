"""The demonstration run job: demonstrations into the run's store, one learner (BC, DAgger, GAIL, AIRL,
maximum-entropy IRL), the policy saved so ``rlhf-gym evaluate`` and ``video`` load it, and lineage.

Where the demonstrations come from: ``--demos PATH`` (a store, a JSONL/Parquet file or a Minari dataset;
files are imported into the run's store as a dataset annotator, stores are copied with their annotators
and consents, or read in place when ``--db`` is that store), else ``--teacher NAME`` records ``--budget``
episodes. DAgger's ``--budget`` counts the teacher's labels instead (``--demos`` optional, to start from).
Every model is registered with the feedback rows that trained it, so withdrawing a person flags it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlhf_gym.config import TrainConfig, coerce_setting
from rlhf_gym.demos.data import (
    Demo,
    check_demos,
    demos_from_store,
    import_demos,
    load_trajectories,
    record_demos,
)
from rlhf_gym.learners.bc import BCSettings

LEARNERS = ("bc", "dagger", "gail", "airl", "maxent-irl")
SETTINGS = ("bc_*", "rounds", "gamma", "irl_iters", "irl_lr", "disc_*", "gen_*", "max_steps")


def demonstration_learner(cfg: TrainConfig) -> str:
    """``cfg.learner`` if it is a demonstration learner; ``bc`` when the CLI default (``tamer``) was left."""
    if cfg.learner in LEARNERS:
        return cfg.learner
    if cfg.learner == TrainConfig.learner:
        return "bc"
    raise ValueError(f"--learner for demonstration feedback must be one of {', '.join(LEARNERS)}, got {cfg.learner!r}")


def bc_settings(extra: dict[str, Any], base: BCSettings | None = None) -> BCSettings:
    """BC's settings from ``--set bc_<field>=...`` (``bc_hidden=64,64``) over ``base`` (BC's defaults unless
    given); unknown ``bc_`` keys are an error."""
    names = [f"bc_{f.name}" for f in fields(BCSettings)]
    bad = sorted(k for k in extra if k.startswith("bc_") and k not in names)
    if bad:
        raise ValueError(f"unknown --set key(s) {', '.join(bad)}; BC reads {', '.join(names)}")
    kw: dict[str, Any] = {}
    for f in fields(BCSettings):
        if f"bc_{f.name}" in extra:
            v = extra[f"bc_{f.name}"]
            kw[f.name] = (tuple(int(x) for x in str(v).split(",")) if f.name == "hidden"
                          else coerce_setting(f"bc_{f.name}", f.default, v))
    return replace(base or BCSettings(), **kw)


def train_demonstration(cfg: TrainConfig) -> dict[str, Any]:
    """Learn from demonstrations as configured; results, store and policy go to ``cfg.out``."""
    from rlhf_gym.config import WEIGHTING_SETTINGS, check_settings
    from rlhf_gym.feedback.registry import teacher_settings
    from rlhf_gym.runtime import torch_threads

    cfg.validate()
    learner = demonstration_learner(cfg)
    check_settings(cfg.extra, (*SETTINGS, *WEIGHTING_SETTINGS, *teacher_settings("demonstration", cfg.teacher)),
                   f"--feedback demonstration --learner {learner}")
    bc_settings(cfg.extra)  # bad values fail before anything is stored
    adversarial_settings(cfg.extra)
    with torch_threads(cfg.threads):
        return _train(cfg, learner)


def _is_tabular(env: gym.Env) -> bool:
    return isinstance(env.observation_space, gym.spaces.Discrete) and hasattr(env.unwrapped, "P")


def _train(cfg: TrainConfig, learner: str) -> dict[str, Any]:
    from rlhf_gym.envs import make_env
    from rlhf_gym.jobs import teacher_for
    from rlhf_gym.runs import MetricsLogger, RunDir
    from rlhf_gym.store import FeedbackStore

    probe = make_env(cfg.env)
    tabular = _is_tabular(probe)
    if learner == "maxent-irl" and not tabular:
        probe.close()
        raise ValueError(f"--learner maxent-irl needs a task with a transition table (env.unwrapped.P, e.g. "
                         f"FrozenLake-v1); {cfg.env} has none: use bc, dagger, gail or airl")
    if tabular and learner not in ("maxent-irl", "bc"):
        probe.close()
        raise ValueError(f"{cfg.env} has discrete (tabular) observations; use --learner maxent-irl or bc")
    if not tabular:
        from rlhf_gym.envs import spec_of

        spec_of(probe)  # Box observations, Discrete or Box actions: a clear error otherwise
    probe.close()
    from rlhf_gym.devices import resolve_device

    device = resolve_device(cfg.device)  # BC/DAgger's network, GAIL/AIRL's discriminator and SB3 generator
    run = RunDir(cfg.out)
    run.save_config(cfg, resolved_device=device)
    store = FeedbackStore(cfg.db or run.db_path)
    run_id = store.add_run(f"run-{Path(cfg.out).resolve().name}-{int(time.time())}", asdict(cfg))
    t0 = time.time()
    source = None
    if learner == "dagger" or not cfg.demos:
        source = teacher_for(cfg, store, run_id, run.path)
    try:
        demos = _gather(cfg, learner, store, run_id, source)
        metrics = MetricsLogger(run)
        out = _LEARN[learner](cfg, demos, store, run_id, source, run, metrics, device)
    finally:
        if source is not None:
            source.close()
    metrics.close()
    policy = run.load_policy()  # what evaluate and video will load
    env = make_env(cfg.env, seed=10_000)
    from rlhf_gym.rollouts import evaluate_policy

    rets = evaluate_policy(env, policy, cfg.eval_episodes, seed=10_000)
    env.close()
    store.close()
    return {"mean_return": float(rets.mean()), "std_return": float(rets.std()), "episodes": int(cfg.eval_episodes),
            "learner": learner, "demos": len(demos), "demo_steps": int(sum(len(d.traj) for d in demos)),
            "demo_return": float(np.mean([d.traj.ret for d in demos])) if demos else None, "run_id": run_id,
            "wall_s": round(time.time() - t0, 2), "device": device, **out}


def _gather(cfg: TrainConfig, learner: str, store: Any, run_id: str, source: Any) -> list[Demo]:
    """The run's demonstrations: from ``--demos``, or recorded from the teacher (not for DAgger)."""
    if cfg.demos:
        demos = demos_for_run(cfg.demos, cfg, store, run_id)
    elif learner == "dagger":
        return []
    else:
        record_demos(source, cfg.env, cfg.budget, seed=cfg.seed, max_steps=cfg.extra.get("max_steps"), run_id=run_id)
        demos = demos_from_store(store, run_id=run_id)
        if not demos:
            raise ValueError(f"the {cfg.teacher} teacher gave no demonstrations (stopped or no consent); nothing to learn")
    check_demos([d.traj for d in demos], cfg.env, cfg.demos or f"--teacher {cfg.teacher}")
    return demos


def demos_for_run(path: str, cfg: TrainConfig, store: Any, run_id: str) -> list[Demo]:
    """The demonstrations of ``--demos PATH`` in the run's store (imported or copied there; read in place when
    ``--db`` is their own store), each with the feedback id that lineage and withdrawal follow."""
    from rlhf_gym.store import FeedbackStore
    from rlhf_gym.store.store import resolve_url

    p = Path(path)
    src_db = p / "feedback.db" if (p / "feedback.db").exists() else (p if p.suffix == ".db" or "://" in path else None)
    if src_db is None:
        trajs, fmt = load_trajectories(path)
        from dataclasses import replace

        trajs = [t if t.env_id else replace(t, env_id=cfg.env) for t in trajs]
        check_demos(trajs, cfg.env, path)
        aid = f"dataset-{p.stem}"[:60]
        fbs = import_demos(store, trajs, aid, source=path, run_id=run_id)
        ids = {fb.id for fb in fbs}
        return [d for d in demos_from_store(store, run_id=run_id) if d.feedback_id in ids]
    if resolve_url(src_db) == store.url:
        return demos_from_store(store, env_id=cfg.env)
    src = FeedbackStore(src_db)
    try:
        wanted = {d.feedback_id for d in demos_from_store(src, env_id=cfg.env)}
        recs = [r for r in src.export_records() if r["feedback"]["id"] in wanted]
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "demos.jsonl"
            import json

            f.write_text("".join(json.dumps(r) + "\n" for r in recs))
            store.import_jsonl(f, actor="train --demos")
        qids = {r["query"]["id"] for r in recs}
    finally:
        src.close()
    return [d for d in demos_from_store(store, env_id=cfg.env) if d.query_id in qids]


# -- the learners -------------------------------------------------------------------------------------------
def _spaces(env_id: str) -> tuple[bool, int | None, np.ndarray | None, np.ndarray | None]:
    from rlhf_gym.envs import make_env

    env = make_env(env_id)
    sp = env.action_space
    env.close()
    if isinstance(sp, gym.spaces.Discrete):
        return True, int(sp.n), None, None
    return False, None, np.asarray(sp.low, np.float32), np.asarray(sp.high, np.float32)


def stack_demos(demos: list[Demo]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """States, actions and the episode index of every demonstrated step (for BC and its held-out episodes)."""
    obs = np.concatenate([d.traj.obs[:-1] for d in demos])
    acts = np.concatenate([np.asarray(d.traj.acts) for d in demos])
    groups = np.concatenate([np.full(len(d.traj), i) for i, d in enumerate(demos)])
    return obs, acts, groups


def _save_bc(fit: Any, run: Any, cfg: TrainConfig, learner: str) -> str:
    path = fit.save(run.file("policy.safetensors"), env=cfg.env, trained_by=learner)
    run.save_policy_info("torch-mlp" if fit.discrete else "torch-mlp-continuous", path.name, learner=learner,
                         env=cfg.env, discrete=fit.discrete)
    return str(path)


def _learn_bc(cfg: TrainConfig, demos: list[Demo], store: Any, run_id: str, source: Any, run: Any,
              metrics: Any, device: str) -> dict[str, Any]:
    from rlhf_gym.envs import make_env
    from rlhf_gym.learners.bc import train_bc
    from rlhf_gym.runs import plot_curve

    probe = make_env(cfg.env)
    if _is_tabular(probe):
        probe.close()
        return _learn_tabular_bc(cfg, demos, store, run_id, run)
    probe.close()
    discrete, n, lo, hi = _spaces(cfg.env)
    obs, acts, groups = stack_demos(demos)
    fit = train_bc(obs, acts, discrete=discrete, n_actions=n, act_low=lo, act_high=hi, groups=groups, seed=cfg.seed,
                   settings=bc_settings(cfg.extra), device=device)
    for e, (tl, vl) in enumerate(zip(fit.train_loss, fit.val_loss, strict=True), 1):
        metrics.log(e, epoch=e, train_loss=tl, val_loss=vl)
    plot_curve(metrics.rows, "epoch", ["train_loss", "val_loss"], run.file("learning_curve.png"),
               title=f"BC on {cfg.env}: loss per epoch (best epoch {fit.best_epoch})")
    path = _save_bc(fit, run, cfg, "bc")
    ids = [d.feedback_id for d in demos if d.feedback_id is not None]
    mid = store.record_model(path, ids, kind="policy", run_id=run_id)
    return {"feedback_used": len(demos), "env_steps": 0, "epochs": fit.epochs, "best_epoch": fit.best_epoch,
            "val_loss": fit.val_loss[fit.best_epoch - 1] if fit.best_epoch else None, "model_id": mid,
            "policy": path}


def _learn_tabular_bc(cfg: TrainConfig, demos: list[Demo], store: Any, run_id: str, run: Any) -> dict[str, Any]:
    """BC on a tabular task: the most demonstrated action per state (0 where no demonstration went)."""
    from rlhf_gym.envs import make_env
    from rlhf_gym.learners.maxent_irl import save_tabular

    env = make_env(cfg.env)
    nS, nA = int(env.observation_space.n), int(env.action_space.n)
    env.close()
    counts = np.zeros((nS, nA))
    for d in demos:
        for s, a in zip(d.traj.obs[:-1].astype(int).ravel(), np.asarray(d.traj.acts, int), strict=True):
            counts[s, a] += 1
    path = save_tabular(run.file("policy_table.json"), counts.argmax(1), np.zeros(nS), learner="bc")
    run.save_policy_info("tabular", path.name, learner="bc", env=cfg.env)
    mid = store.record_model(path, [d.feedback_id for d in demos if d.feedback_id is not None], kind="policy",
                             run_id=run_id)
    return {"feedback_used": len(demos), "env_steps": 0, "model_id": mid, "policy": str(path)}


def _learn_dagger(cfg: TrainConfig, demos: list[Demo], store: Any, run_id: str, source: Any, run: Any,
                  metrics: Any, device: str) -> dict[str, Any]:
    from rlhf_gym.envs import make_env
    from rlhf_gym.learners.dagger import DAGGER_SETTINGS, dagger
    from rlhf_gym.rollouts import evaluate_policy
    from rlhf_gym.runs import plot_curve

    discrete, n, lo, hi = _spaces(cfg.env)
    init_obs = init_acts = None
    if demos:
        init_obs, init_acts, _ = stack_demos(demos)
    env = make_env(cfg.env, seed=cfg.seed)
    eval_env = make_env(cfg.env, seed=20_000)

    def on_round(res: Any) -> None:
        rets = evaluate_policy(eval_env, res.bc.policy(), min(cfg.eval_episodes, 10), seed=20_000)
        metrics.log(res.env_steps, labels_used=res.labels_used, labels_asked=res.labels_asked,
                    env_steps=res.env_steps, mean_return=float(rets.mean()))

    res = dagger(env, source, cfg.budget, discrete=discrete, n_actions=n, act_low=lo, act_high=hi,
                 init_obs=init_obs, init_acts=init_acts, rounds=int(cfg.extra.get("rounds", 5)),
                 seed=cfg.seed, env_id=cfg.env, run_id=run_id,
                 settings=bc_settings(cfg.extra, DAGGER_SETTINGS), on_round=on_round, device=device)
    env.close()
    eval_env.close()
    plot_curve(metrics.rows, "labels_used", ["mean_return"], run.file("learning_curve.png"),
               title=f"DAgger on {cfg.env}: true return vs labels ({cfg.teacher} teacher)")
    path = _save_bc(res.bc, run, cfg, "dagger")
    ids = [d.feedback_id for d in demos if d.feedback_id is not None] + res.feedback_ids
    mid = store.record_model(path, ids, kind="policy", run_id=run_id)
    return {"feedback_used": res.labels_used + len(demos), "labels_asked": res.labels_asked,
            "labels_used": res.labels_used, "env_steps": res.env_steps, "rounds": res.rounds,
            "stopped": res.stopped, "model_id": mid, "policy": path}


def _learn_maxent(cfg: TrainConfig, demos: list[Demo], store: Any, run_id: str, source: Any, run: Any,
                  metrics: Any, device: str) -> dict[str, Any]:
    """Tabular maximum-entropy IRL: numpy on the CPU whatever ``device`` says (no network to move)."""
    from rlhf_gym.envs import make_env
    from rlhf_gym.learners.maxent_irl import maxent_irl, plot_reward_heatmap, save_tabular, tabular_mdp

    env = make_env(cfg.env)
    mdp = tabular_mdp(env)
    desc = getattr(env.unwrapped, "desc", None)
    env.close()
    trajs = [(d.traj.obs.astype(int).ravel(), np.asarray(d.traj.acts, int)) for d in demos]
    res = maxent_irl(mdp, trajs, gamma=float(cfg.extra.get("gamma", 0.99)), iters=int(cfg.extra.get("irl_iters", 200)),
                     lr=float(cfg.extra.get("irl_lr", 0.5)))
    for k, gap in enumerate(res.history, 1):
        metrics.log(k, iteration=k, visitation_gap=gap)
    labels = np.asarray(desc).astype(str) if desc is not None else None
    shape = labels.shape if labels is not None else None
    plot_reward_heatmap(res.reward, run.file("reward_heatmap.png"), shape=shape, labels=labels,
                        title=f"maxent-irl: recovered reward per state ({cfg.env})")
    from rlhf_gym.runs import plot_curve

    plot_curve(metrics.rows, "iteration", ["visitation_gap"], run.file("learning_curve.png"),
               title="maxent-irl: |expert - policy| state visitation")
    ids = [d.feedback_id for d in demos if d.feedback_id is not None]
    reward_path = save_tabular(run.file("reward_table.json"), res.policy, res.reward, learner="maxent-irl", kind="reward")
    rid = store.record_model(reward_path, ids, kind="reward", run_id=run_id)
    path = save_tabular(run.file("policy_table.json"), res.policy, res.reward, learner="maxent-irl")
    run.save_policy_info("tabular", path.name, learner="maxent-irl", env=cfg.env)
    mid = store.record_model(path, [], kind="policy", run_id=run_id, derived_from=[rid])
    return {"feedback_used": len(demos), "env_steps": 0, "reward_model_id": rid, "model_id": mid,
            "policy": str(path), "reward": res.reward.tolist()}


def adversarial_settings(extra: dict[str, Any]) -> Any:
    """GAIL/AIRL settings from ``--set disc_*=``, ``gen_*=`` and ``gamma=``; unknown ones are an error."""
    from rlhf_gym.learners.adversarial import AdversarialSettings

    names = {f.name: f for f in fields(AdversarialSettings)}
    bad = sorted(k for k in extra if k.startswith(("disc_", "gen_")) and k not in names)
    if bad:
        raise ValueError(f"unknown --set key(s) {', '.join(bad)}; GAIL/AIRL read {', '.join(sorted(names))}")
    return AdversarialSettings(**{k: coerce_setting(k, names[k].default, v) for k, v in extra.items() if k in names})


def _learn_adversarial(cfg: TrainConfig, demos: list[Demo], store: Any, run_id: str, source: Any, run: Any,
                       metrics: Any, device: str) -> dict[str, Any]:
    from rlhf_gym.envs import make_env, spec_of
    from rlhf_gym.learners.airl import train_airl
    from rlhf_gym.learners.gail import train_gail
    from rlhf_gym.learners.preference import default_timesteps
    from rlhf_gym.rollouts import evaluate_policy
    from rlhf_gym.runs import plot_curve

    probe = make_env(cfg.env)
    spec = spec_of(probe)
    threshold = probe.spec.reward_threshold if probe.spec else None
    probe.close()
    algo = cfg.algo if cfg.algo != "auto" else ("ppo" if spec.discrete else "sac")
    if algo == "sac" and spec.discrete:
        raise ValueError(f"--algo sac needs continuous actions, but {cfg.env} has discrete actions; use --algo ppo")
    timesteps = cfg.timesteps or default_timesteps(algo, spec.max_episode_steps)
    eval_env = make_env(cfg.env, seed=20_000)

    def on_eval(res: Any) -> None:
        rets = evaluate_policy(eval_env, _sb3_act(res.algo, spec.discrete), min(cfg.eval_episodes, 5), seed=20_000)
        last = res.history[-1] if res.history else {}
        metrics.log(res.env_steps, env_steps=res.env_steps, mean_return=float(rets.mean()),
                    disc_accuracy=last.get("disc_accuracy"), disc_loss=last.get("disc_loss"))

    learner = cfg.learner
    train = train_gail if learner == "gail" else train_airl
    res = train(cfg.env, [d.traj for d in demos], algo=algo, timesteps=timesteps, seed=cfg.seed,
                settings=adversarial_settings(cfg.extra), on_eval=on_eval, eval_every=max(timesteps // 10, 1000),
                device=device)
    on_eval(res)
    eval_env.close()
    plot_curve(metrics.rows, "env_steps", ["mean_return"], run.file("learning_curve.png"),
               title=f"{learner.upper()} on {cfg.env}: true return ({algo} generator)", hline=threshold)
    reward_path = res.reward.save(run.file("reward_model.safetensors"))
    ids = [d.feedback_id for d in demos if d.feedback_id is not None]
    rid = store.record_model(reward_path, ids, kind="reward", run_id=run_id)
    res.algo.save(run.file("policy.zip"))
    run.save_policy_info("sb3", "policy.zip", algo=algo, discrete=spec.discrete, learner=learner)
    mid = store.record_model(run.file("policy.zip"), [], kind="policy", run_id=run_id, derived_from=[rid])
    last = res.history[-1] if res.history else {}
    return {"feedback_used": len(demos), "env_steps": res.env_steps, "timesteps": timesteps, "algo": algo,
            "disc_steps": res.disc_steps, "disc_accuracy": last.get("disc_accuracy"), "reward_model_id": rid,
            "model_id": mid, "policy": str(run.file("policy.zip")), "reward_model": str(reward_path),
            "learn_s": round(res.wall_s, 2)}


def _sb3_act(model: Any, discrete: bool) -> Any:
    def act(obs: np.ndarray) -> Any:
        a, _ = model.predict(np.asarray(obs), deterministic=True)
        return int(a) if discrete else np.asarray(a)

    return act


_LEARN = {"bc": _learn_bc, "dagger": _learn_dagger, "maxent-irl": _learn_maxent, "gail": _learn_adversarial,
          "airl": _learn_adversarial}
