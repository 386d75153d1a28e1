"""The preference run job: run folder, store, teacher, SB3 learn() with the feedback rounds of
:class:`rlhf_gym.learners.preference.PreferenceLoop`, saving, lineage, plots."""

from __future__ import annotations

import shutil
import time
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_gym.config import TrainConfig
from rlhf_gym.envs import make_env, spec_of
from rlhf_gym.feedback.selection import sample_segments
from rlhf_gym.governance.bias import WeightPolicy
from rlhf_gym.jobs import teacher_for
from rlhf_gym.learners.preference import (
    PreferenceLoop,
    PreferenceSettings,
    _callback,
    default_timesteps,
    make_algo,
)
from rlhf_gym.rewards.models import RewardModel
from rlhf_gym.rewards.training import FEW_LABELS, normalise_output
from rlhf_gym.rewards.wrappers import LearnedRewardVecEnv
from rlhf_gym.runs import RunDir, plot_curve


def train_preference(cfg: TrainConfig) -> dict[str, Any]:
    """Train a policy from preference feedback (or on a given reward model with ``cfg.reward``)."""
    from rlhf_gym.config import WEIGHTING_SETTINGS, check_settings
    from rlhf_gym.feedback.registry import teacher_settings
    from rlhf_gym.jobs.demonstration import bc_settings
    from rlhf_gym.learners.bc import BCSettings
    from rlhf_gym.runtime import torch_threads

    cfg.validate()
    check_settings(cfg.extra, (*(f.name for f in fields(PreferenceSettings)), *WEIGHTING_SETTINGS,
                               *teacher_settings("preference", cfg.teacher),
                               *(f"bc_{f.name}" for f in fields(BCSettings))),  # demo_bc's cloning
                   f"--feedback preference --teacher {cfg.teacher}")
    bc_settings(cfg.extra)  # demo_bc's values fail before anything is stored
    with torch_threads(cfg.threads):
        return _train_preference(cfg)


def _train_preference(cfg: TrainConfig) -> dict[str, Any]:
    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_gym.devices import resolve_device
    from rlhf_gym.store import FeedbackStore

    st, _ = PreferenceSettings.from_extra(dict(cfg.extra))
    device = resolve_device(cfg.device)  # one device for SB3 and the reward model (and BC with --demos)
    run = RunDir(cfg.out)
    run.save_config(cfg, resolved_device=device)
    probe = make_env(cfg.env)
    spec = spec_of(probe)
    algo_name = cfg.algo if cfg.algo != "auto" else ("ppo" if spec.discrete else "sac")
    if algo_name == "sac" and spec.discrete:
        raise ValueError(f"--algo sac needs continuous actions, but {cfg.env} has discrete actions; use --algo ppo")
    timesteps = cfg.timesteps or default_timesteps(algo_name, spec.max_episode_steps)
    threshold = st.threshold if st.threshold is not None else (probe.spec.reward_threshold if probe.spec else None)
    t_start = time.time()

    store = FeedbackStore(cfg.db or run.db_path)
    run_id = store.add_run(None, asdict(cfg))
    demos: list[Any] = []
    if cfg.demos:
        if cfg.reward:
            raise ValueError("--demos pre-trains the reward model that --reward replaces; give one of them")
        from rlhf_gym.demos.data import check_demos
        from rlhf_gym.jobs.demonstration import demos_for_run

        demos = demos_for_run(cfg.demos, cfg, store, run_id)
        check_demos([d.traj for d in demos], cfg.env, cfg.demos)
    if cfg.reward:
        reward = RewardModel.load(cfg.reward, device=device)
        source = None
        shutil.copy(Path(reward_path(cfg.reward)), run.file("reward_model.safetensors"))
        shutil.copy(Path(reward_path(cfg.reward)).with_suffix(".json"), run.file("reward_model.json"))
    else:
        reward = RewardModel.for_spaces(probe.observation_space, probe.action_space, seed=cfg.seed,
                                        ensemble=st.ensemble, inputs=st.inputs)
        source = teacher_for(cfg, store, run_id, run.path) if cfg.budget > 0 else None
    probe.close()
    if 0 < cfg.budget < FEW_LABELS and not cfg.reward:
        msg = f"budget {cfg.budget} is tiny: the reward model will be a rough guess (and may come out inverted)"
        warnings.warn(msg, stacklevel=2)
        print(f"WARNING: {msg}", flush=True)

    n_envs = st.n_envs if algo_name == "ppo" else 1
    # through make_env, so entry points, old-API envs and pixel preprocessing reach SB3 too
    venv = LearnedRewardVecEnv(make_vec_env(lambda: make_env(cfg.env, render_mode="rgb_array"), n_envs=n_envs,
                                            seed=cfg.seed), reward)
    loop = PreferenceLoop(env_id=cfg.env, seed=cfg.seed, budget=cfg.budget, segment_length=cfg.segment_length,
                          eval_episodes=cfg.eval_episodes, st=st, algo_name=algo_name, timesteps=timesteps, run=run,
                          store=store, run_id=run_id, source=source, reward=reward, venv=venv, threshold=threshold,
                          weighting=WeightPolicy.from_settings(cfg.extra), learn_reward=cfg.reward is None,
                          demos=demos, device=device)
    loop.algo = make_algo(algo_name, venv, cfg.seed, timesteps, device=device)
    if loop.unsup_steps > 0:
        from rlhf_gym.rewards.exploration import StateEntropyReward

        venv.explore = StateEntropyReward(int(np.prod(venv.observation_space.shape)))
    demo_info: dict[str, Any] = {}
    if not cfg.reward:
        # before any label: fit input normalisation on random-policy states; an untrained model gives a
        # zero-mean random reward (the zero-label control)
        init = loop.collect()
        if demos:
            demo_info = pretrain_from_demos(loop, init, demos, st, cfg.extra)
        else:
            reward.fit_input_normalisation(np.concatenate([t.obs for t in init]))
            normalise_output(reward, [], sample_segments(init, 32, cfg.segment_length, loop.rng))
    t_learn = time.time()
    try:
        try:
            loop.algo.learn(total_timesteps=timesteps, callback=_callback(loop), progress_bar=cfg.progress)
        except ImportError:  # progress bar extras (tqdm/rich) missing
            loop.algo.learn(total_timesteps=timesteps, callback=_callback(loop), progress_bar=False)
        learn_s = time.time() - t_learn
        # what SB3 itself spent (collecting and updating): learn() minus our callback and reward calls
        sb3_s = learn_s - loop.t["callback"] - venv.reward_s
        if source is not None:
            loop.take_answers(timesteps)
            if source.pending:
                msg = f"{source.pending} label(s) still pending when training ended; they stay in the store"
                loop.warnings.append(msg)
                print(msg, flush=True)
            source.close()
        loop.algo.save(run.file("policy.zip"))
        run.save_policy_info("sb3", "policy.zip", algo=algo_name, discrete=spec.discrete)
        # the policy's lineage: every reward model it was trained on, hence every label behind them
        # (and, when it was cloned from them, the demonstrations themselves)
        bc_ids = [int(d.feedback_id) for d in demos if d.feedback_id is not None] if demo_info.get("bc") else []
        store.record_model(run.file("policy.zip"), bc_ids, kind="policy", run_id=run_id,
                           derived_from=loop.model_ids)
        t0 = time.time()
        final = loop.evaluate(cfg.eval_episodes)
        loop.t["eval"] += time.time() - t0
        loop.logger.log(timesteps, round=loop.round, labels=loop.labels_used(), asked=loop.asked,
                        eval_return=float(final.mean()), final=True)
        if loop.threshold is not None and loop.first_solved is None and final.mean() >= loop.threshold:
            loop.first_solved = {"step": timesteps, "labels": loop.labels_used()}
        rows = loop.logger.rows
        plot_curve(rows, "step", ["eval_return", "train_true_return"], run.file("learning_curve.png"),
                   title=f"{cfg.env}: true return (preference, {algo_name})", hline=threshold)
        if not cfg.reward:
            plot_curve(rows, "labels", ["eval_return"], run.file("return_vs_labels.png"),
                       title=f"{cfg.env}: true return vs labels used", hline=threshold)
            plot_curve(rows, "labels", ["heldout_accuracy", "train_accuracy"], run.file("accuracy_vs_labels.png"),
                       title="reward model accuracy vs labels used")
    finally:
        loop.close()
        store.close()
    fit = getattr(loop, "last_fit", None) or {}
    total_s = time.time() - t_start
    return {
        "mean_return": float(final.mean()), "std_return": float(final.std()), "episodes": int(cfg.eval_episodes),
        "feedback_used": loop.labels_used(), "asked": loop.asked, "algo": algo_name, "timesteps": timesteps,
        "threshold": threshold, "first_solved": loop.first_solved,
        "heldout_accuracy": fit.get("heldout_accuracy"), "heldout_pairs": fit.get("heldout_pairs"),
        "prequential_accuracy": fit.get("prequential_accuracy"), "prequential_pairs": fit.get("prequential_pairs"),
        "train_accuracy": fit.get("train_accuracy"), "fit_val_accuracy": fit.get("fit_val_accuracy"),
        "labels_trained": len(loop.pairs) - sum(loop.heldout_flags),
        "inverted_rounds": loop.inverted_rounds, "warnings": loop.warnings, "model_ids": loop.model_ids,
        "run_id": run_id, "wall_s": total_s, "learn_s": learn_s, "eval_s": loop.t["eval"],
        "reward_train_s": loop.t["reward_train"], "query_s": loop.t["queries"],
        "sb3_s": sb3_s, "reward_inference_s": venv.reward_s, "device": device, **demo_info,
    }


def pretrain_from_demos(loop: PreferenceLoop, init: list[Any], demos: list[Any], st: PreferenceSettings,
                        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Before the first query: the reward model fitted on comparisons ranked from the demonstrations (D-REX,
    :meth:`PreferenceLoop.build_demo_pairs`) and, with ``demo_bc``, the policy cloned from them (early
    stopping: :data:`~rlhf_gym.learners.bc.PRETRAIN_SETTINGS` under the ``bc_*`` keys of ``extra``)."""
    n = loop.build_demo_pairs()
    # input scaling from every state the ranking shows (demonstrations, noisy clones, random play)
    loop.reward.fit_input_normalisation(np.concatenate([t.obs for t in init] +
                                                       [np.asarray(t.obs) for ts in loop.demo_levels for t in ts]))
    loop.train_reward(0)
    out: dict[str, Any] = {"demos": len(demos), "demo_pairs": n,
                           "demo_level_returns": [float(np.mean([t.ret for t in ts])) for ts in loop.demo_levels],
                           "demo_fit_accuracy": (getattr(loop, "last_fit", None) or {}).get("train_accuracy")}
    if st.demo_bc:
        from rlhf_gym.jobs.demonstration import bc_settings, stack_demos
        from rlhf_gym.learners.bc import PRETRAIN_SETTINGS, pretrain_sb3_policy

        obs, acts, groups = stack_demos(demos)
        out["bc"] = pretrain_sb3_policy(loop.algo, obs, acts, groups=groups, seed=loop.seed,
                                        settings=bc_settings(extra or {}, PRETRAIN_SETTINGS))
    return out


def reward_path(p: str | Path) -> Path:
    """The ``.safetensors`` file of a reward model given as a file or a run folder."""
    p = Path(p)
    if p.is_dir():
        p = p / "reward_model.safetensors"
    return p if p.suffix == ".safetensors" else p.with_suffix(".safetensors")
