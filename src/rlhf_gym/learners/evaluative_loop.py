"""The evaluative-feedback training loop: act, ask about some steps, learn from each answer.

:func:`teach` is the loop itself (also used by the benchmark); :func:`train_evaluative` wraps it into a
run: run folder, store, teacher, progress bar, periodic evaluation on the true reward, saving, lineage,
and the annotator weighting (:class:`AnnotatorWeighting`) the preference loop applies too.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from rlhf_gym.config import TrainConfig
from rlhf_gym.envs import make_env, require_discrete, try_render
from rlhf_gym.feedback.sources import FeedbackSource, StopFeedback
from rlhf_gym.learners.common import MLP, FeedbackLearner, History, LearnerSettings, Seen
from rlhf_gym.rollouts import rollout_batch
from rlhf_gym.runtime import torch_threads
from rlhf_gym.types import Feedback, StepQuery

if TYPE_CHECKING:
    from rlhf_gym.governance.bias import WeightPolicy
    from rlhf_gym.store import FeedbackStore

#: learner name -> "module:class"
LEARNERS: dict[str, str] = {
    "tamer": "rlhf_gym.learners.tamer:TamerLearner",
    "reinforce": "rlhf_gym.learners.reinforce_feedback:ReinforceFeedbackLearner",
    "coach": "rlhf_gym.learners.coach:CoachLearner",
}


def make_learner(name: str, obs_dim: int, n_actions: int, rng: np.random.Generator,
                 settings: LearnerSettings | None = None) -> FeedbackLearner:
    if name not in LEARNERS:
        raise ValueError(f"unknown evaluative learner {name!r}; expected one of {', '.join(LEARNERS)}")
    mod, cls = LEARNERS[name].split(":")
    return getattr(importlib.import_module(mod), cls)(obs_dim, n_actions, rng, settings)


def evaluate_greedy(env_id: str, model: MLP, episodes: int, seed: int = 10_000) -> np.ndarray:
    """True returns of the greedy policy, episodes run side by side (one batched forward per step).

    Episode ``i`` is reset with ``seed + i``, exactly as :func:`rlhf_gym.rollouts.evaluate_policy` does,
    so the numbers match ``rlhf-gym evaluate``.
    """
    envs = [make_env(env_id) for _ in range(episodes)]
    try:
        trajs = rollout_batch(envs, lambda obs: np.argmax(model.outputs(obs), axis=1),
                              [seed + i for i in range(episodes)])
    finally:
        for e in envs:
            e.close()
    return np.array([t.ret for t in trajs])


@dataclass
class TeachStats:
    """What happened in one :func:`teach` call."""

    asked: int = 0
    used: int = 0
    skipped: int = 0
    env_steps: int = 0
    episodes: int = 0
    stopped: str | None = None
    warmup_steps: int = 0
    feedback_ids: list[int] = field(default_factory=list)
    """The policy's lineage: every answer that took part in an update (with a weight above 0)."""
    excluded: int = 0
    """Answers that arrived while their annotator's weight was 0 (kept out of the updates and the lineage)."""


class AnnotatorWeighting:
    """Each annotator's weight under ``annotator_weighting`` for the evaluative loop, as the preference loop
    applies it: 1 for everyone unless flagged, then ``flagged_weight`` (downweight) or 0 (exclude).

    The weights come from :func:`rlhf_gym.governance.report.training_weights` over this run's labels. Flags
    are statistics that appear (or go) as answers arrive, but recomputing them is a full annotator report,
    dearer than an answer's update; so :meth:`due` asks for a refresh at most once per ``every`` answers
    (and :func:`teach` does one before the first answer). With the policy ``off`` this is inert: every
    weight is 1 and the store is never read, so runs are exactly what they are without it.
    """

    def __init__(self, store: FeedbackStore | None, policy: WeightPolicy, run_id: str | None = None,
                 every: int = 20) -> None:
        if every < 1:
            raise ValueError(f"weight_every must be >= 1, got {every}")
        self.store, self.policy, self.run_id, self.every = store, policy, run_id, every
        self.weights: dict[str, float] = {}
        self.refreshes = 0
        self._since = 0

    @property
    def active(self) -> bool:
        return self.policy.mode != "off" and self.store is not None

    def of(self, annotator_id: str) -> float:
        """The weight of one annotator's answers (1.0 for anyone not flagged or not yet seen)."""
        return float(self.weights.get(annotator_id, 1.0))

    def due(self) -> bool:
        """Count one more answer; True when ``every`` answers have come since the last refresh."""
        self._since += 1
        return self._since >= self.every

    def refresh(self) -> bool:
        """Recompute the weights from the store; True if any annotator's weight changed."""
        from rlhf_gym.governance.report import training_weights

        self._since = 0
        self.refreshes += 1
        assert self.store is not None
        new = {a: float(w) for a, w in training_weights(self.store, self.policy, run_id=self.run_id).items()}
        changed = {a for a in new.keys() | self.weights.keys() if new.get(a, 1.0) != self.weights.get(a, 1.0)}
        self.weights = new
        return bool(changed)


def warm_up_scaler(env: gym.Env, learner: FeedbackLearner, seed: int) -> int:
    """Play ``warmup_steps`` random steps (nobody watches, nothing is asked) to fix the observation scaling.

    Returns the number of steps played. The same for every task: it is what lets one set of defaults fit
    CartPole's, Acrobot's and MountainCar's very different observation scales.
    """
    n = learner.s.warmup_steps
    rng = np.random.default_rng(seed + 7919)
    obs, _ = env.reset(seed=seed + 7919)
    for _ in range(n):
        learner.scaler.update(obs)
        obs, _r, term, trunc, _ = env.step(int(rng.integers(learner.n_actions)))
        if term or trunc:
            obs, _ = env.reset()
    learner.freeze_scaler()
    return n


def teach(env: gym.Env, learner: FeedbackLearner, source: FeedbackSource, budget: int, *, run_id: str | None = None,
          seed: int = 0, on_answer: Callable[[TeachStats], bool | None] | None = None,
          frame_dir: Path | None = None, people: bool = False, wait_s: float = 600.0,
          weighting: AnnotatorWeighting | None = None) -> TeachStats:
    """Run the agent, ask about the steps the learner picks (at most ``budget`` questions), learn from answers.

    ``people``: the source is a person (or several): after the last question, wait up to ``wait_s`` seconds
    for open answers instead of running on. ``on_answer`` is called after every answer the learner used; returning True stops the loop.
    A source that does not report which step it judges (``reports_judged_step = False``, e.g. a delayed
    teacher) gets credit assigned by time. Stops cleanly on :class:`StopFeedback` or Ctrl-C
    (``stats.stopped`` says why); the caller saves whatever was learned.
    ``weighting``: each answer counts with its annotator's weight (see :class:`AnnotatorWeighting`). An
    answer that arrives while its annotator's weight is 0 takes no part in any update and stays out of
    ``stats.feedback_ids`` (the lineage). Answers an annotator gave before being excluded leave the replay
    but stay in the lineage: they did shape the net (as earlier reward models carry them in the preference
    loop's policy lineage), so withdrawing that person must still flag the policy.
    """
    stats = TeachStats()
    if not learner.scaler_frozen:
        stats.warmup_steps = warm_up_scaler(env, learner, seed)
    weigh = weighting is not None and weighting.active
    held: dict[str, list[int]] = {}  # feedback ids of answers kept aside at weight 0, by annotator
    by_step = getattr(source, "reports_judged_step", True)
    history = History()
    pending: dict[str, Seen] = {}
    # A teacher that reports only *when* it answered judges one of the steps ``credit_window`` before the
    # answer. The learner makes those steps unambiguous: it keeps one action for ``hold`` steps either side
    # of the step it asks about, so whichever step the answer judges, it judges that action in nearly
    # that state. (It chooses when to ask; what it does while asking is part of that choice.)
    hold = learner.s.credit_window[1] - learner.s.credit_window[0] if learner.s.hold_when_delayed else 0
    plan: list[tuple[int, bool]] = []
    obs, _ = env.reset(seed=seed)
    episode = 0

    def reweigh() -> None:
        """New annotator weights: re-weight the replay; answers of a re-admitted annotator join the lineage."""
        assert weighting is not None
        if not weighting.refresh():
            return
        learner.reweight(weighting.weights)
        for ann in [a for a in held if weighting.of(a) > 0]:
            stats.feedback_ids += held.pop(ann)

    def handle(fbs: list[Feedback], step: int) -> bool:
        for fb in fbs:
            judged = pending.pop(fb.query_id, None)
            if fb.value is None:
                stats.skipped += 1
                continue
            args = (fb.value, judged if by_step else None, fb.step if fb.step is not None else step, history)
            weight = 1.0
            if weigh:
                assert weighting is not None
                if weighting.due():
                    reweigh()
                weight = weighting.of(fb.annotator_id)
                learner.learn(*args, annotator=fb.annotator_id, weight=weight)
            else:  # exactly the call (and the records) of a loop without weighting
                learner.learn(*args)
            if weight <= 0:
                stats.excluded += 1
                if fb.id is not None:
                    held.setdefault(fb.annotator_id, []).append(fb.id)
                continue
            stats.used += 1
            if fb.id is not None:
                stats.feedback_ids.append(fb.id)
            if on_answer is not None and on_answer(stats):
                stats.stopped = "done"
                return True
        return False

    if weigh:
        reweigh()  # labels already in this run's store count from the first answer
    try:
        while stats.asked < budget or source.pending:
            step = stats.env_steps
            learner.observe(obs)
            if plan:  # holding an action around a question to a delayed teacher
                action, ask = plan.pop(0)
            else:
                action = learner.act(obs)
                ask = stats.asked < budget and learner.should_ask(obs, action)
                if ask and not by_step and hold > 0:
                    plan = [(action, False)] * (hold - 1) + [(action, True)] + [(action, False)] * hold
                    ask = False
            seen = history.add(step, obs, action, episode)
            if ask and stats.asked < budget:
                frame_path = None
                if frame_dir is not None:
                    frame = try_render(env)
                    if frame is not None:
                        import imageio.v2 as imageio

                        frame_dir.mkdir(parents=True, exist_ok=True)
                        frame_path = str(frame_dir / f"step-{step:07d}.png")
                        imageio.imwrite(frame_path, frame)
                q = StepQuery.make(np.asarray(obs), action, step, episode, run_id=run_id, frame_path=frame_path)
                source.post([q])
                history.mark_asked(step)
                pending[q.id] = seen
                stats.asked += 1
            if handle(source.poll(step), step):
                break
            if source.stopped:
                stats.stopped = "teacher stopped"
                break
            obs, _r, term, trunc, _ = env.step(action)
            stats.env_steps += 1
            if term or trunc:
                plan = []
                obs, _ = env.reset()
                episode += 1
                stats.episodes += 1
            if stats.asked >= budget and source.pending and people:
                # a person still has questions open: wait for them rather than running on
                deadline = time.monotonic() + wait_s
                while source.pending and not source.stopped and time.monotonic() < deadline:
                    if handle(source.poll(stats.env_steps), stats.env_steps):
                        break
                    time.sleep(0.1)
                break
    except StopFeedback:
        stats.stopped = "teacher stopped"
    except KeyboardInterrupt:
        stats.stopped = "interrupted"
    return stats


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
    settings = LearnerSettings.from_extra(cfg.extra)
    with torch_threads(cfg.threads):
        return _train_evaluative(cfg, settings)


def _train_evaluative(cfg: TrainConfig, settings: LearnerSettings) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rlhf_gym.feedback.registry import TeacherRequest, is_person, make_teacher
    from rlhf_gym.governance.bias import WeightPolicy
    from rlhf_gym.runs import MetricsLogger, RunDir, plot_curve
    from rlhf_gym.store import FeedbackStore

    spec = require_discrete(cfg.env, cfg.learner)
    console = Console(stderr=True)
    run = RunDir(cfg.out)
    run.save_config(cfg)
    store = FeedbackStore(cfg.db or run.db_path)
    run_id = store.add_run(f"run-{Path(cfg.out).resolve().name}-{int(time.time())}", asdict(cfg))
    rng = np.random.default_rng(cfg.seed)
    source = make_teacher(TeacherRequest(
        "evaluative", cfg.teacher, cfg.env, seed=cfg.seed, store=store, run_id=run_id, annotator_id=cfg.annotator,
        settings=cfg.extra, noise=cfg.noise, server=cfg.server, token=cfg.token, out_dir=run.path,
        log=lambda m: console.print(m)))
    human = is_person("evaluative", cfg.teacher)
    env = make_env(cfg.env, seed=cfg.seed, render_mode="rgb_array" if human else None)
    learner = make_learner(cfg.learner, spec.obs_shape[0], int(spec.n_actions or 0), rng, settings)
    weighting = AnnotatorWeighting(store, WeightPolicy.from_settings(cfg.extra), run_id, every=int(cfg.extra.get("weight_every", 20)))
    metrics = MetricsLogger(run)
    eval_every = int(cfg.extra.get("eval_every", max(1, cfg.budget // 10)))
    last_eval = {"used": -1}

    def evaluate(stats: TeachStats) -> dict[str, Any]:
        learner.model.set_scaler(learner.scaler)
        rets = evaluate_greedy(cfg.env, learner.model, cfg.eval_episodes, seed=20_000)
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
    final = evaluate_greedy(cfg.env, learner.model, cfg.eval_episodes, seed=10_000)
    metrics.close()
    plot_curve(metrics.rows, "feedback_used", ["mean_return"], run.file("learning_curve.png"),
               title=f"{cfg.learner} on {cfg.env}: true return vs answers ({cfg.teacher} teacher)",
               hline=spec_threshold(cfg.env))
    store.close()
    if stats.stopped and stats.stopped != "done":
        console.print(f"stopped ({stats.stopped}); {stats.used} answers used and saved")
    if stats.excluded:
        console.print(f"annotator_weighting={weighting.policy.mode}: {stats.excluded} answers from excluded "
                      "annotators were left out of training and of the policy's lineage")
    return {"mean_return": float(final.mean()), "std_return": float(final.std()), "episodes": int(cfg.eval_episodes),
            "feedback_used": stats.used, "asked": stats.asked, "skipped": stats.skipped, "feedback_excluded": stats.excluded,
            "env_steps": stats.env_steps, "warmup_steps": stats.warmup_steps, "stopped": stats.stopped, "run_id": run_id, "model_id": model_id,
            "policy": str(weights), "wall_s": round(time.time() - t0, 2)}


def spec_threshold(env_id: str) -> float | None:
    """The environment's own "solved" return, if it has one (for plots)."""
    try:
        return gym.spec(env_id).reward_threshold
    except Exception:
        return None
