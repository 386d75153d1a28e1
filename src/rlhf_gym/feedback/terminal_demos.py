"""A person at the terminal showing the task: each step shows the state (and the frame's PNG path, as the
evaluative prompt does) and a digit picks the action; ``q`` ends the episode, keeping the steps played.

DAgger's "which action here?" queries are answered the same way, one state at a time (``s`` skips one).
Ctrl-C stops the source and keeps everything recorded so far (an episode cut short is stored as
truncated). Consent first: nothing is asked or stored without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_gym.feedback.sources import FeedbackSource, echo
from rlhf_gym.feedback.teachers_demonstration import trajectory_record
from rlhf_gym.feedback.terminal import ACTION_NAMES, OBS_NAMES, _names_for
from rlhf_gym.types import ActionQuery, DemoQuery, Feedback, Query, Trajectory

if TYPE_CHECKING:
    from rlhf_gym.governance.consent import FeedbackPolicy
    from rlhf_gym.store import FeedbackStore

QUIT = "quit"
SKIP = "skip"


class TerminalDemoSource(FeedbackSource):
    """A person playing episodes (or labelling states) at the keyboard; blocking, discrete actions only.

    Args:
        annotator_id: the person's pseudonym (kind ``human`` in the store).
        store: where consent and answers go (required for people).
        frame_dir: where each step's frame is saved as a PNG (its path is shown); None shows no frames.
        input_fn, out, consent_fn: injectable for tests (default ``input``, ``print`` and the project's
            terminal consent prompt).
    """

    simulated = False

    def __init__(self, annotator_id: str, store: FeedbackStore | None = None, run_id: str | None = None,
                 frame_dir: Path | None = None, input_fn: Callable[[str], str] = input,
                 out: Callable[[str], None] = print, consent_fn: Callable[[], bool] | None = None,
                 policy: FeedbackPolicy | None = None) -> None:
        super().__init__(annotator_id, store, run_id)
        self.policy = policy
        self.frame_dir, self.input_fn, self.out, self._consent_fn = frame_dir, input_fn, out, consent_fn
        self._consented: bool | None = None
        self._queue: list[Query] = []
        self.answered = 0

    def _submit(self, queries: list[Query]) -> None:
        for q in queries:
            if not isinstance(q, DemoQuery | ActionQuery):
                raise TypeError(f"the terminal demonstrator answers demo and action queries, got a {q.kind} query")
            self._queue.append(q)

    def _consent(self) -> bool:
        if self._consented is None:
            from rlhf_gym.governance.consent import person_consents

            self._consented = person_consents(self.store, self.annotator_id, self.policy, self.input_fn, self.out,
                                              self._consent_fn)
        return self._consented

    # -- showing a state and reading an action ----------------------------------------------------------
    def describe(self, obs: np.ndarray, env_id: str, step: int, frame_path: str | None) -> str:
        vals = np.asarray(obs, dtype=np.float64).ravel()
        names = _names_for(env_id, OBS_NAMES)
        names = names if names and len(names) == len(vals) else None
        lines = [f"\n{env_id}, step {step}. The agent sees:"]
        lines += [f"  {names[i] if names else f'obs[{i}]':<24} {v: .4f}" for i, v in enumerate(vals)]
        if frame_path:
            lines.append(f"Frame: {frame_path}")
        return "\n".join(lines)

    def _choices(self, env_id: str, n: int) -> str:
        names = _names_for(env_id, ACTION_NAMES)
        return ", ".join(f"{a} = {names[a]}" if names and a < len(names) else str(a) for a in range(n))

    def read_action(self, env_id: str, n: int, allow_skip: bool = False) -> int | str:
        """A valid action index, ``QUIT`` or ``SKIP``; anything else asks again with a message."""
        extra = ", s = skip" if allow_skip else ""
        while True:
            ans = self.input_fn(f"Action? ({self._choices(env_id, n)}{extra}, q = end) ").strip().lower()
            if ans in ("q", "quit"):
                return QUIT
            if allow_skip and ans in ("s", "skip"):
                return SKIP
            if ans.isdigit() and 0 <= int(ans) < n:
                return int(ans)
            self.out(f"Please type an action number from 0 to {n - 1}{extra} or q to end; got {echo(ans)}.")

    def _frame(self, env: Any, tag: str) -> str | None:
        if self.frame_dir is None:
            return None
        from rlhf_gym.envs import try_render

        fr = try_render(env)
        if fr is None:
            return None
        import imageio.v2 as imageio

        self.frame_dir.mkdir(parents=True, exist_ok=True)
        path = self.frame_dir / f"demo-{tag}.png"
        imageio.imwrite(path, fr)
        return str(path)

    # -- answering ------------------------------------------------------------------------------------
    def _collect(self, step: int | None) -> list[Feedback]:
        out: list[Feedback] = []
        if not self._queue:
            return out
        if not self._consent():
            self.out("Stopping: no demonstration is asked without consent.")
            self.stopped = True
            self._queue.clear()
            return out
        while self._queue and not self.stopped:
            q = self._queue.pop(0)
            if isinstance(q, DemoQuery):
                fb = self._play(q)
            else:
                assert isinstance(q, ActionQuery)
                fb = self._label(q)
            if fb is not None:
                out.append(fb)
                self.answered += 1
        if self.stopped:
            self._queue.clear()
        return out

    def _play(self, q: DemoQuery) -> Feedback | None:
        import gymnasium as gym

        from rlhf_gym.envs import make_env

        env = make_env(q.env_id, seed=q.seed, render_mode="rgb_array" if self.frame_dir else None)
        if not isinstance(env.action_space, gym.spaces.Discrete):
            env.close()
            raise ValueError(f"playing at the terminal needs discrete actions; {q.env_id} has {env.action_space}")
        n = int(env.action_space.n)
        obs, _ = env.reset(seed=q.seed)
        observations, acts, rews = [obs], [], []
        terminated = truncated = False
        self.out(f"\nShow how it is done: {q.env_id} (seed {q.seed}), at most {q.max_steps} steps.")
        try:
            while not (terminated or truncated):
                self.out(self.describe(obs, q.env_id, len(acts), self._frame(env, f"{q.id}-{len(acts):05d}")))
                a = self.read_action(q.env_id, n)
                if a == QUIT:
                    truncated = True
                    break
                obs, r, terminated, truncated, _ = env.step(a)
                observations.append(obs)
                acts.append(int(a))
                rews.append(float(r))
                truncated = bool(truncated) or (len(acts) >= q.max_steps and not terminated)
        except (KeyboardInterrupt, EOFError):
            self.out(f"\nInterrupted; the {len(acts)} steps played are kept.")
            self.stopped, truncated = True, not terminated
        finally:
            env.close()
        if not acts:
            return None
        traj = Trajectory(np.asarray(observations), np.asarray(acts), np.asarray(rews), bool(terminated),
                          bool(truncated) and not terminated, env_id=q.env_id, seed=q.seed)
        self.out(f"Episode recorded: {len(traj)} steps, return {traj.ret:.1f}.")
        return self._record(q, None, step=len(traj), data=trajectory_record(traj))

    def _label(self, q: ActionQuery) -> Feedback | None:
        from rlhf_gym.envs import make_env

        env = make_env(q.env_id)
        n = int(getattr(env.action_space, "n", 0))
        env.close()
        if n <= 0:
            raise ValueError(f"labelling at the terminal needs discrete actions; {q.env_id} has none")
        try:
            self.out(self.describe(q.obs, q.env_id, q.step, q.frame_path))
            a = self.read_action(q.env_id, n, allow_skip=True)
        except (KeyboardInterrupt, EOFError):
            self.out(f"\nInterrupted; your {self.answered} answers are saved.")
            self.stopped = True
            return None
        if a == QUIT:
            self.out(f"Stopping; your {self.answered} answers are saved.")
            self.stopped = True
            return None
        if a == SKIP:
            return self._record(q, None, step=q.step)
        return self._record(q, None, step=q.step, data={"action": int(a)})
