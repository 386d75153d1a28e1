"""The evaluative run job: run folder, store, teacher, progress bar, evaluation, saving and lineage
around :func:`rlhf_gym.learners.evaluative_loop.teach`."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlhf_gym.config import TrainConfig
from rlhf_gym.envs import make_env, require_discrete
from rlhf_gym.governance.weighting import AnnotatorWeighting
from rlhf_gym.jobs import teacher_for
from rlhf_gym.learners.common import LearnerSettings
from rlhf_gym.learners.evaluative_loop import TeachStats, learner_class, make_learner, teach
from rlhf_gym.rollouts import evaluate_policy
from rlhf_gym.runtime import torch_threads


def train_evaluative(cfg: TrainConfig) -> dict[str, Any]:
    """Train an agent from evaluative feedback as configured; results and feedback go to ``cfg.out``.

    Returns the true return of the greedy policy (``mean_return``, ``std_return``, ``episodes``) and
    ``feedback_used``, ``feedback_excluded``, ``env_steps``, ``asked``, ``stopped``, ``run_id``, ``policy``.
    Flagged annotators' answers count as ``annotator_weighting`` says (``--set`` or ``rlhf-gym.toml``;
    weights refreshed every ``--set weight_every=20`` answers).
    """
    from rlhf_gym.config import WEIGHTING_SETTINGS, check_settings
    from rlhf_gym.feedback.registry import teacher_settings

    cfg.validate()
    spec = require_discrete(cfg.env, cfg.learner)
    if len(spec.obs_shape) != 1:
        raise ValueError(f"evaluative learners need a flat observation vector; {cfg.env} has shape {spec.obs_shape}")
    check_settings(cfg.extra, (*LearnerSettings.__dataclass_fields__, *WEIGHTING_SETTINGS, "weight_every",
                               "eval_every", "wait_s", *teacher_settings("evaluative", cfg.teacher)),
                   f"--feedback evaluative --teacher {cfg.teacher}")
    settings = LearnerSettings.for_learner(learner_class(cfg.learner), cfg.extra)
    with torch_threads(cfg.threads):
        return _train_evaluative(cfg, settings)


def _train_evaluative(cfg: TrainConfig, settings: LearnerSettings) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rlhf_gym.devices import resolve_device
    from rlhf_gym.feedback.registry import is_person
    from rlhf_gym.governance.bias import WeightPolicy
    from rlhf_gym.runs import MetricsLogger, RunDir, plot_curve
    from rlhf_gym.store import FeedbackStore

    spec = require_discrete(cfg.env, cfg.learner)
    console = Console(stderr=True)
    device = resolve_device(cfg.device)  # where the learner's network trains and acts (see learners.common)
    run = RunDir(cfg.out)
    run.save_config(cfg, resolved_device=device)
    store = FeedbackStore(cfg.db or run.db_path)
    run_id = store.add_run(f"run-{Path(cfg.out).resolve().name}-{int(time.time())}", asdict(cfg))
    rng = np.random.default_rng(cfg.seed)
    source = teacher_for(cfg, store, run_id, run.path, log=lambda m: console.print(m))
    human = is_person("evaluative", cfg.teacher)
    env = make_env(cfg.env, seed=cfg.seed, render_mode="rgb_array" if human else None)
    learner = make_learner(cfg.learner, spec.obs_shape[0], int(spec.n_actions or 0), rng, settings, device=device)
    weighting = AnnotatorWeighting(store, WeightPolicy.from_settings(cfg.extra), run_id, every=int(cfg.extra.get("weight_every", 20)))
    metrics = MetricsLogger(run)
    eval_every = int(cfg.extra.get("eval_every", max(1, cfg.budget // 10)))
    last_eval = {"used": -1}

    def evaluate(stats: TeachStats) -> dict[str, Any]:
        learner.model.set_scaler(learner.scaler)
        rets = evaluate_policy(cfg.env, learner.model.greedy, cfg.eval_episodes, seed=20_000, batched=True)
        last_eval["used"] = stats.used
        return metrics.log(stats.env_steps, feedback_used=stats.used, asked=stats.asked, env_steps=stats.env_steps,
                           mean_return=float(rets.mean()), std_return=float(rets.std()))

    t0 = time.time()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("return {task.fields[ret]}"), TimeElapsedColumn(), console=console,
                  disable=not cfg.progress or human, transient=False) as bar:
        task = bar.add_task(f"{cfg.learner} <- {cfg.teacher}", total=cfg.budget, ret="?")

        def on_answer(stats: TeachStats) -> None:
            bar.update(task, completed=stats.asked)
            if stats.used % eval_every == 0:
                row = evaluate(stats)
                bar.update(task, ret=f"{row['mean_return']:.1f}")

        evaluate(TeachStats())
        stats = teach(env, learner, source, cfg.budget, run_id=run_id, seed=cfg.seed, on_answer=on_answer,
                      frame_dir=run.file("frames") if human else None, people=human,
                      wait_s=float(cfg.extra.get("wait_s", 600.0)), weighting=weighting)
        bar.update(task, completed=stats.asked)
    source.close()
    env.close()
    if last_eval["used"] != stats.used:
        evaluate(stats)
    weights = learner.save(run.file("policy.safetensors"))
    run.save_policy_info("torch-mlp", weights.name, learner=cfg.learner, env=cfg.env)
    model_id = store.record_model(weights, stats.feedback_ids, kind="policy", run_id=run_id)
    learner.model.set_scaler(learner.scaler)
    final = evaluate_policy(cfg.env, learner.model.greedy, cfg.eval_episodes, seed=10_000, batched=True)
    metrics.close()
    plot_curve(metrics.rows, "feedback_used", ["mean_return"], run.file("learning_curve.png"),
               title=f"{cfg.learner} on {cfg.env}: true return vs answers ({cfg.teacher} teacher)",
               hline=spec_threshold(cfg.env))
    store.close()
    if stats.stopped and stats.stopped != "done":
        console.print(f"stopped ({stats.stopped}); {stats.used} answers used and saved")
    if stats.asked and not stats.used and stats.skipped:
        console.print(f"WARNING: every answer was a skip ({stats.skipped} of {stats.asked}); the policy learned "
                      "nothing from people. On the evaluative page the steps wait for each person by default; "
                      "a step counts as skipped only when they let it pass while playing, or chose 'can't tell'")
    if stats.excluded:
        console.print(f"annotator_weighting={weighting.policy.mode}: {stats.excluded} answers from excluded "
                      "annotators were left out of training and of the policy's lineage")
    return {"mean_return": float(final.mean()), "std_return": float(final.std()), "episodes": int(cfg.eval_episodes),
            "feedback_used": stats.used, "asked": stats.asked, "skipped": stats.skipped, "feedback_excluded": stats.excluded,
            "env_steps": stats.env_steps, "warmup_steps": stats.warmup_steps, "stopped": stats.stopped, "run_id": run_id, "model_id": model_id,
            "policy": str(weights), "wall_s": round(time.time() - t0, 2), "device": device}


def spec_threshold(env_id: str) -> float | None:
    """The environment's own "solved" return, if it has one (for plots)."""
    try:
        return gym.spec(env_id).reward_threshold
    except Exception:
        return None
