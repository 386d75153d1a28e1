"""Teachers for demonstration feedback: someone shows the task (whole episodes) or labels states (DAgger).

Two queries are answered: a :class:`~rlhf_gym.types.DemoQuery` ("play ``env_id`` from ``seed``") with the
episode in ``Feedback.data["trajectory"]`` (the same record the web app's demonstration page stores), and an
:class:`~rlhf_gym.types.ActionQuery` ("which action here?") with ``Feedback.data["action"]``.

Registered names: ``expert`` (the cached Stable-Baselines3 expert, or ``--set expert=PATH``), ``noisy`` (the
expert with a random action at rate ``--noise``, drawn from the teacher's own stream), ``random`` (the
control: random "demonstrations") and ``human`` (a person at the terminal, see
:mod:`rlhf_gym.feedback.terminal_demos`). ``web`` (the annotation app's demonstration page) is registered
for every feedback type already.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from rlhf_gym.feedback.registry import TeacherRequest, register_teacher
from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.learners.sb3_policy import greedy
from rlhf_gym.types import ActionQuery, DemoQuery, Feedback, Query, Trajectory

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore

PolicyFn = Callable[[np.ndarray], Any]


def trajectory_record(traj: Trajectory) -> dict[str, Any]:
    """The JSON form of a demonstrated episode kept in ``Feedback.data`` (as the web app writes it)."""
    return {"trajectory": {"obs": np.asarray(traj.obs).tolist(), "acts": np.asarray(traj.acts).tolist(),
                           "rews": np.asarray(traj.rews).tolist(), "terminated": bool(traj.terminated),
                           "truncated": bool(traj.truncated), "env_id": traj.env_id, "seed": traj.seed},
            "return": traj.ret, "steps": len(traj)}


def random_action(space: gym.Space, rng: np.random.Generator) -> Any:
    """A uniformly random action of a Discrete or Box space drawn from ``rng`` (not the space's own seed)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.start + rng.integers(space.n))
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(space.low, space.high).astype(space.dtype)
    raise ValueError(f"demonstrations need a Discrete or Box action space, got {space}")


class PolicyDemonstrator(FeedbackSource):
    """A simulated demonstrator: plays ``policy`` (with a random action at rate ``epsilon``).

    Args:
        policy: obs -> action; ``None`` with ``epsilon=1`` for the random control.
        annotator_id, store, run_id: as for every source; answers are committed before they are returned.
        rng: the teacher's own stream (its random actions).
        epsilon: probability of a uniformly random action instead of the policy's.
    """

    simulated = True

    def __init__(self, policy: PolicyFn | None, annotator_id: str, store: FeedbackStore | None = None,
                 run_id: str | None = None, rng: np.random.Generator | None = None, epsilon: float = 0.0) -> None:
        super().__init__(annotator_id, store, run_id)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon (the random-action rate) must be in [0, 1], got {epsilon}")
        if policy is None and epsilon < 1.0:
            raise ValueError("a demonstrator without a policy must act at random (epsilon=1)")
        self.policy, self.epsilon = policy, epsilon
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._spaces: dict[str, gym.Space] = {}
        self._ready: list[Feedback] = []

    def _space(self, env_id: str) -> gym.Space:
        if env_id not in self._spaces:
            from rlhf_gym.envs import make_env

            env = make_env(env_id)
            self._spaces[env_id] = env.action_space
            env.close()
        return self._spaces[env_id]

    def act(self, obs: np.ndarray, env_id: str) -> Any:
        """The demonstrator's action in ``obs`` (the policy's, or a random one at rate ``epsilon``)."""
        if self.epsilon > 0 and (self.epsilon >= 1.0 or self.rng.random() < self.epsilon):
            return random_action(self._space(env_id), self.rng)
        assert self.policy is not None
        return self.policy(np.array(obs))

    def _submit(self, queries: list[Query]) -> None:
        from rlhf_gym.envs import make_env
        from rlhf_gym.rollouts import rollout

        for q in queries:
            if isinstance(q, DemoQuery):
                env = make_env(q.env_id, seed=q.seed)
                try:
                    traj = rollout(env, lambda o, eid=q.env_id: self.act(o, eid), seed=q.seed,
                                   max_steps=q.max_steps, env_id=q.env_id)
                finally:
                    env.close()
                self._ready.append(self._record(q, None, step=len(traj), data=trajectory_record(traj)))
            elif isinstance(q, ActionQuery):
                a = self.act(q.obs, q.env_id)
                self._ready.append(self._record(q, None, step=q.step, data={"action": np.asarray(a).tolist()}))
            else:
                raise TypeError(f"demonstration teachers answer demo and action queries, got a {q.kind} query")

    def _collect(self, step: int | None) -> list[Feedback]:
        out, self._ready = self._ready, []
        return out


# -- experts ---------------------------------------------------------------------------------------------
def expert_for(env_id: str, settings: Any, log: Callable[[str], None] = print) -> PolicyFn:
    """The expert's policy: ``--set expert=PATH`` (an SB3 zip), else the cached SB3 expert of ``env_id``.

    The cached expert is trained once on the true reward and kept only if it reaches the task's bar on
    held-out episodes (PPO, then DQN, for discrete actions; SAC for continuous ones:
    :func:`rlhf_gym.feedback.teachers_evaluative.train_expert`).
    A tabular task (a transition table in ``env.unwrapped.P``, e.g. FrozenLake) gets its exact optimal policy.
    """
    from rlhf_gym.envs import env_spec, make_env
    from rlhf_gym.feedback.teachers_evaluative import load_expert, load_or_train_expert

    path = settings.get("expert")
    env = make_env(env_id)
    tabular = isinstance(env.observation_space, gym.spaces.Discrete) and hasattr(env.unwrapped, "P")
    if tabular and not path:  # the exact optimal policy of the task's own transition table
        from rlhf_gym.learners.maxent_irl import TablePolicy, optimal_policy, tabular_mdp

        table = optimal_policy(tabular_mdp(env))
        env.close()
        return TablePolicy(table)
    env.close()
    spec = env_spec(env_id)
    model = load_expert(path) if path else load_or_train_expert(env_id, None, seed=int(settings.get("expert_seed", 0)),
                                                                log=log)
    return greedy(model, spec.discrete)


SETTINGS = ("expert", "expert_seed")


@register_teacher("demonstration", "oracle", settings=SETTINGS,
                  help="the expert (the name --teacher defaults to)")
@register_teacher("demonstration", "expert", settings=SETTINGS,
                  help="the cached SB3 expert (or --set expert=PATH) plays the task")
def expert_demonstrator(req: TeacherRequest) -> FeedbackSource:
    return PolicyDemonstrator(expert_for(req.env_id, req.settings, req.log), str(req.annotator_id), req.store,
                              req.run_id, rng=req.rng())


@register_teacher("demonstration", "noisy", settings=SETTINGS,
                  help="the expert, with a random action at rate --noise")
def noisy_demonstrator(req: TeacherRequest) -> FeedbackSource:
    return PolicyDemonstrator(expert_for(req.env_id, req.settings, req.log), str(req.annotator_id), req.store,
                              req.run_id, rng=req.rng(), epsilon=req.noise)


@register_teacher("demonstration", "random", help="the control: random 'demonstrations'")
def random_demonstrator(req: TeacherRequest) -> FeedbackSource:
    return PolicyDemonstrator(None, str(req.annotator_id), req.store, req.run_id, rng=req.rng(), epsilon=1.0)


@register_teacher("demonstration", "human", person=True, help="you, at the terminal (consent first)")
def terminal_demonstrator(req: TeacherRequest) -> FeedbackSource:
    from rlhf_gym.feedback.terminal_demos import TerminalDemoSource

    return TerminalDemoSource(str(req.annotator_id), store=req.store, run_id=req.run_id,
                              frame_dir=(req.out_dir / "frames") if req.out_dir else None, policy=req.consent)
