"""A person at the terminal judging single steps: "Was the action correct? (0/1)".

The source shows the observation values (with names for the tasks we know), the action, and the
path of the rendered frame saved as a PNG when rendering works. Answers: ``1``/``y`` good, ``0``/``n``
bad, ``s`` skip, ``q`` stop (everything answered so far is kept); anything else asks again with a
message. Ctrl-C stops the same way as ``q``. Before the first question the person sees the purpose and
consent text (:func:`rlhf_gym.governance.consent.ensure_terminal_consent`); without consent nothing is
asked or stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from rlhf_gym.feedback.sources import FeedbackSource, echo
from rlhf_gym.types import Feedback, Query, StepQuery

if TYPE_CHECKING:
    from rlhf_gym.governance.consent import FeedbackPolicy
    from rlhf_gym.store import FeedbackStore

#: Names of observation entries and actions for tasks we know (others show obs[0], obs[1], ...).
OBS_NAMES: dict[str, tuple[str, ...]] = {
    "CartPole": ("cart position", "cart velocity", "pole angle (rad)", "pole angular velocity"),
    "MountainCar": ("car position", "car velocity"),
    "Acrobot": ("cos(theta1)", "sin(theta1)", "cos(theta2)", "sin(theta2)", "theta1 velocity", "theta2 velocity"),
    "LunarLander": ("x", "y", "x velocity", "y velocity", "angle", "angular velocity", "left leg down",
                    "right leg down"),
}
ACTION_NAMES: dict[str, tuple[str, ...]] = {
    "CartPole": ("push left", "push right"),
    "MountainCar": ("accelerate left", "don't accelerate", "accelerate right"),
    "Acrobot": ("torque -1", "torque 0", "torque +1"),
    "LunarLander": ("do nothing", "fire left engine", "fire main engine", "fire right engine"),
}

GOOD = {"1": 1.0, "y": 1.0, "yes": 1.0, "0": 0.0, "n": 0.0, "no": 0.0}


def _names_for(env_id: str | None, table: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    if not env_id:
        return None
    base = env_id.split("/")[-1].split("-")[0]
    return table.get(base)


class TerminalSource(FeedbackSource):
    """A person answering step queries at the keyboard (blocking: the agent waits for each answer).

    Args:
        annotator_id: the person's pseudonymous id (registered as kind ``human`` in the store).
        store: where answers and the consent decision are recorded (required for people).
        env_id: used to name observation entries and actions.
        input_fn, out: injectable for tests (default ``input`` and ``print``).
        consent_fn: called once before the first question; returns False to stop (default: the
            project's terminal consent prompt).
    """

    simulated = False
    reports_judged_step = True

    def __init__(self, annotator_id: str, store: FeedbackStore | None = None, run_id: str | None = None,
                 env_id: str | None = None, input_fn: Callable[[str], str] = input,
                 out: Callable[[str], None] = print, obs_names: Sequence[str] | None = None,
                 consent_fn: Callable[[], bool] | None = None, policy: FeedbackPolicy | None = None) -> None:
        super().__init__(annotator_id, store, run_id)
        self.input_fn, self.out = input_fn, out
        self.obs_names = tuple(obs_names) if obs_names else _names_for(env_id, OBS_NAMES)
        self.action_names = _names_for(env_id, ACTION_NAMES)
        self._consent_fn = consent_fn
        self.policy = policy
        self._consented: bool | None = None
        self._queue: list[StepQuery] = []
        self.answered = 0

    def _submit(self, queries: list[Query]) -> None:
        for q in queries:
            if not isinstance(q, StepQuery):
                raise TypeError(f"the terminal teacher answers step queries, got a {q.kind} query")
            self._queue.append(q)

    def _consent(self) -> bool:
        if self._consented is None:
            from rlhf_gym.governance.consent import person_consents

            self._consented = person_consents(self.store, self.annotator_id, self.policy, self.input_fn, self.out,
                                              self._consent_fn)
        return self._consented

    def describe(self, q: StepQuery) -> str:
        """The text shown for one step."""
        obs = np.asarray(q.obs, dtype=np.float64).ravel()
        names = self.obs_names if self.obs_names and len(self.obs_names) == len(obs) else None
        lines = [f"\nEpisode {q.episode}, step {q.step}. The agent sees:"]
        for i, v in enumerate(obs):
            lines.append(f"  {names[i] if names else f'obs[{i}]':<24} {v: .4f}")
        a = q.action
        label = f" ({self.action_names[int(a)]})" if self.action_names and 0 <= int(a) < len(self.action_names) else ""
        lines.append(f"It chose action {a}{label}.")
        if q.frame_path:
            lines.append(f"Frame: {q.frame_path}")
        return "\n".join(lines)

    def _collect(self, step: int | None) -> list[Feedback]:
        out: list[Feedback] = []
        if not self._queue:
            return out
        try:
            if not self._consent():
                self.out("Stopping: no feedback is asked without consent.")
                self.stopped = True
                self._queue.clear()
                return out
            while self._queue:
                q = self._queue[0]
                self.out(self.describe(q))
                value = self._ask_one()
                if value == "quit":
                    self.out(f"Stopping; your {self.answered} answers are saved.")
                    self.stopped = True
                    self._queue.clear()
                    break
                self._queue.pop(0)
                out.append(self._record(q, value, step=q.step))
                if value is not None:
                    self.answered += 1
        except (KeyboardInterrupt, EOFError):
            self.out(f"\nInterrupted; your {self.answered} answers are saved.")
            self.stopped = True
            self._queue.clear()
        return out

    def _ask_one(self) -> float | None | str:
        while True:
            ans = self.input_fn("Was the action correct? (0/1, y/n, s = skip, q = stop and save) ").strip().lower()
            if ans in GOOD:
                return GOOD[ans]
            if ans in ("s", "skip"):
                return None
            if ans in ("q", "quit"):
                return "quit"
            self.out(f"Please type 1 or y (correct), 0 or n (wrong), s to skip or q to stop; got {echo(ans)}.")
