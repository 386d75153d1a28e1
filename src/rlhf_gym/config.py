"""Typed run configuration. The CLI builds one of these and hands it to the library."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

EVALUATIVE_LEARNERS = ("reinforce", "tamer", "coach")


@dataclass
class TrainConfig:
    """Everything one training run needs; saved as ``config.json`` in the run folder."""

    env: str = "CartPole-v1"
    """Gymnasium environment id."""
    feedback: str = "evaluative"
    """Kind of feedback: ``evaluative`` (was this action right?) or ``preference`` (which clip is better?)."""
    learner: str = "tamer"
    """Evaluative learner: ``reinforce``, ``tamer`` or ``coach``."""
    teacher: str = "oracle"
    """Who answers: a simulated teacher (``oracle``, ``noisy``, ``delayed``, ``random``...), ``human`` (terminal) or ``web``."""
    budget: int = 300
    """Feedback answers (evaluative) or labels (preference) the learner may ask for."""
    seed: int = 0
    """Seeds environments, networks and teachers; the same seed gives the same run."""
    out: str = "runs/default"
    """Run folder."""
    algo: str = "auto"
    """Preference RL algorithm: ``ppo``, ``sac`` or ``auto`` (SAC for continuous actions, PPO otherwise)."""
    reward: str | None = None
    """Path to a trained reward model (run folder or file) to optimise instead of learning one."""
    demos: str | None = None
    """Demonstrations to learn from (``--feedback demonstration``): a store, JSONL/Parquet file or Minari dataset."""
    db: str | None = None
    """Store URL or path; default ``OUT/feedback.db`` (SQLite). ``postgresql://...`` for a shared server."""
    server: str | None = None
    """Annotation server URL for ``--teacher web``."""
    token: str | None = None
    """Admin token for the annotation server."""
    noise: float = 0.2
    """Wrong-answer rate of the ``noisy``/``mistake`` teacher."""
    timesteps: int | None = None
    """Environment steps for RL on a learned reward (preference); None picks a default per task."""
    segment_length: int = 50
    """Clip length for preference queries."""
    eval_episodes: int = 20
    """Episodes per evaluation of the greedy policy on the true reward."""
    annotator: str | None = None
    """Annotator id to record answers under (default: the teacher's name, or a new pseudonym for people)."""
    progress: bool = True
    """Show a progress bar."""
    device: str = "auto"
    """PyTorch device for every model the run trains (SB3, the reward model, the evaluative and demonstration
    learners' networks, discriminators): ``auto`` (a CUDA GPU when there is one), ``cpu`` or ``cuda[:N]``.
    Each job resolves it once and records the result as ``device`` in its result and ``resolved_device`` in
    ``config.json``."""
    threads: int | None = 1
    """PyTorch CPU threads during the job (restored afterwards); None leaves the process setting alone."""
    policy: str | None = None
    """``rlhf-gym.toml`` whose ``[feedback]`` purpose and consent text a person sees (the CLI uses ./rlhf-gym.toml if present)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Learner-specific settings (``--set key=value``), e.g. ``lr=0.01``."""

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad setting."""
        from rlhf_gym.jobs import feedback_types

        if self.feedback not in feedback_types():
            raise ValueError(f"--feedback must be one of {', '.join(feedback_types())}, got {self.feedback!r}")
        # preference runs accept 0 labels: the zero-label control (the untrained, anchored reward model)
        if self.budget < 0 or (self.budget == 0 and self.feedback != "preference"):
            raise ValueError(f"--budget must be a positive number of answers, got {self.budget}")
        from rlhf_gym.feedback.registry import resolve

        resolve(self.feedback, self.teacher)  # ValueError naming the teachers of this feedback type
        if self.feedback == "evaluative":
            if self.learner not in EVALUATIVE_LEARNERS:
                raise ValueError(f"--learner must be one of {', '.join(EVALUATIVE_LEARNERS)}, got {self.learner!r}")
        elif self.feedback == "preference":
            if self.algo not in ("auto", "ppo", "sac"):
                raise ValueError(f"--algo must be ppo, sac or auto, got {self.algo!r}")
            if self.segment_length < 1:
                raise ValueError(f"--segment-length must be >= 1, got {self.segment_length}")
        from rlhf_gym.devices import check_device, resolve_device

        check_device(self.device)
        if self.device != "auto":
            resolve_device(self.device)  # cuda without a GPU is an error for every job, not a silent CPU run
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or None), got {self.threads}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"--noise must be a rate in [0, 1], got {self.noise}")
        if self.teacher == "web" and not self.server:
            raise ValueError("--teacher web needs --server URL of a running `rlhf-gym serve`")
        if self.eval_episodes < 1:
            raise ValueError(f"--eval-episodes must be >= 1, got {self.eval_episodes}")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: ``--set`` keys every job reads: the annotator weighting (governance)
WEIGHTING_SETTINGS = ("annotator_weighting", "flagged_weight", "weight_flags")


def check_settings(extra: dict[str, Any], allowed: Any, what: str) -> None:
    """Raise ValueError for ``--set`` keys nobody reads (a typo must not pass silently), listing the valid ones.

    ``allowed`` holds names, and prefixes ending in ``*`` (``teacher_*``).
    """
    allowed = tuple(dict.fromkeys(allowed))
    exact = {a for a in allowed if not a.endswith("*")}
    prefixes = tuple(a[:-1] for a in allowed if a.endswith("*"))
    bad = [k for k in extra if k not in exact and not (prefixes and k.startswith(prefixes))]
    if bad:
        raise ValueError(f"unknown --set key(s) for {what}: {', '.join(sorted(bad))}; "
                         f"valid keys: {', '.join(sorted(allowed))}")


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` pairs; values are read as int, float, bool or left as strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        val = _auto(v.strip())
        if isinstance(val, float) and not math.isfinite(val):
            raise ValueError(f"--set {k.strip()}={v.strip()}: not a finite number")
        out[k.strip()] = val
    return out


def coerce_setting(name: str, default: Any, v: Any) -> Any:
    """``v`` (a ``--set`` value, typed or text) as the type of the setting's ``default``; a bool from text must
    say true/false (``bool("false")`` would be True), else a ValueError naming the setting."""
    if isinstance(default, bool):
        if isinstance(v, bool):
            return v
        text = str(v).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, got {v!r}")
    if isinstance(default, int) and isinstance(v, float) and not v.is_integer():
        raise ValueError(f"{name} must be a whole number, got {v!r}")  # int(2.5) would silently be 2
    try:
        return type(default)(v)
    except (TypeError, ValueError):
        kind = {int: "a whole number", float: "a number", str: "text"}.get(type(default), type(default).__name__)
        raise ValueError(f"{name} must be {kind}, got {v!r}") from None


def _auto(v: str) -> Any:
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v
