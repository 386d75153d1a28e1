"""Run jobs: one per feedback type, each taking a validated :class:`~rlhf_gym.config.TrainConfig` and
returning a result dict with at least ``mean_return``, ``std_return``, ``episodes``, ``feedback_used``.

A job owns the run (folder, store, teacher from the registry, plots, saving); the algorithm it drives
lives in :mod:`rlhf_gym.learners` and takes its parts as arguments. A new feedback type adds one line
here and one module beside this one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlhf_gym.config import TrainConfig

#: feedback type -> "module:function" (imported when run, so ``--help`` stays fast)
JOBS: dict[str, str] = {
    "evaluative": "rlhf_gym.jobs.evaluative:train_evaluative",
    "preference": "rlhf_gym.jobs.preference:train_preference",
    "demonstration": "rlhf_gym.jobs.demonstration:train_demonstration",
    "tradeoff": "rlhf_gym.jobs.tradeoff:train_tradeoff",
}


def consent_policy(path: str | None) -> Any:
    """The consent policy of ``--policy PATH`` (None: the default text; nothing is read from the current directory)."""
    if path is None:
        return None
    from rlhf_gym.governance.consent import load_policy

    return load_policy(path)


def teacher_for(cfg: TrainConfig, store: Any, run_id: str | None, out_dir: Any, **over: Any) -> Any:
    """The run's feedback source from the registry, with everything the config says about who answers
    (teacher, annotator, noise, server, consent text); ``over`` replaces fields (``settings``, ``log``)."""
    from rlhf_gym.feedback.registry import TeacherRequest, make_teacher

    return make_teacher(TeacherRequest(**{
        "feedback": cfg.feedback, "name": cfg.teacher, "env_id": cfg.env, "seed": cfg.seed, "store": store,
        "run_id": run_id, "annotator_id": cfg.annotator, "settings": cfg.extra, "noise": cfg.noise,
        "server": cfg.server, "token": cfg.token, "out_dir": out_dir, "consent": consent_policy(cfg.policy),
        **over}))


def feedback_types() -> tuple[str, ...]:
    """Every feedback type a run can learn from."""
    return tuple(JOBS)


def run_job(cfg: TrainConfig) -> dict[str, Any]:
    """Run the job of ``cfg.feedback``."""
    if cfg.feedback not in JOBS:
        raise ValueError(f"--feedback must be one of {', '.join(JOBS)}, got {cfg.feedback!r}")
    mod, fn = JOBS[cfg.feedback].split(":")
    return getattr(importlib.import_module(mod), fn)(cfg)
