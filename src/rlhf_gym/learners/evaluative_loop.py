"""The evaluative-feedback training loop: act, ask about some steps, learn from each answer.

:func:`teach` is the loop itself (also used by the benchmark). The run job around it (run folder, store,
teacher, progress bar, periodic evaluation, saving, lineage) is :func:`rlhf_gym.jobs.evaluative.train_evaluative`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from rlhf_gym.envs import try_render
from rlhf_gym.feedback.sources import FeedbackSource, StopFeedback
from rlhf_gym.learners.common import FeedbackLearner, History, LearnerSettings, Seen
from rlhf_gym.types import Feedback, StepQuery

if TYPE_CHECKING:
    from rlhf_gym.governance.weighting import AnnotatorWeighting

#: learner name -> "module:class"
LEARNERS: dict[str, str] = {
    "tamer": "rlhf_gym.learners.tamer:TamerLearner",
    "reinforce": "rlhf_gym.learners.reinforce_feedback:ReinforceFeedbackLearner",
    "coach": "rlhf_gym.learners.coach:CoachLearner",
}


def learner_class(name: str) -> type[FeedbackLearner]:
    """The class registered as ``name`` in :data:`LEARNERS`."""
    if name not in LEARNERS:
        raise ValueError(f"--learner must be one of {', '.join(LEARNERS)}, got {name!r}")
    mod, cls = LEARNERS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def make_learner(name: str, obs_dim: int, n_actions: int, rng: np.random.Generator,
                 settings: LearnerSettings | None = None, device: str = "cpu") -> FeedbackLearner:
    """A fresh learner; ``settings`` None gives the learner's own defaults; its network lives on ``device``."""
    return learner_class(name)(obs_dim, n_actions, rng, settings, device=device)


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
