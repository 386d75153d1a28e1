"""DAgger: the learner acts, the teacher labels states it visits, and the policy is refit on them all.

Each round, the current policy runs whole episodes (until the round has visited at least as many states
as its share of the budget), and the teacher is asked "which action here?"
(:class:`~rlhf_gym.types.ActionQuery`) at that many of the visited states, drawn uniformly at random.
Labels spread over whole episodes, not the first steps of one: a policy that fails late (a cart drifting
off the track after 400 steps) gets labels where it fails. Before there is any policy (no ``--demos``),
the first round is the teacher's own: it is asked at every state and its answer is executed, a short
demonstration. Each query carries the episode's reset seed and the actions taken before it, so a viewer
(the web app, the terminal prompt) can replay the episode to that state and draw it. The budget counts
labels asked: skipped answers count too, since the teacher's time was spent. After each round the BC
learner is refit on the initial demonstrations plus every label so far (Ross, Gordon and Bagnell 2011,
with the learner's own policy executed from the second round, as is usual in practice).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.learners.bc import BCResult, BCSettings, train_bc
from rlhf_gym.types import ActionQuery

#: most environment steps one round's rollout may take (an environment without a time limit cannot hang it)
ROLLOUT_CAP = 5_000

#: each refit's early stopping: a refit's held-out split is drawn from few episodes whose states are alike, so
#: its loss follows the training loss and BC's long patience over-fits (CartPole-v1, 200 labels: 10/10 seeds
#: solved with these, 4/5 with BC's defaults); ``--set bc_patience=...`` still overrides
DAGGER_SETTINGS = BCSettings(max_epochs=200, patience=15)


@dataclass
class DaggerResult:
    bc: BCResult
    labels_asked: int = 0
    labels_used: int = 0
    env_steps: int = 0
    rounds: int = 0
    feedback_ids: list[int] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False


@dataclass
class _Visit:
    """A visited state and how to get back to it: the episode's reset seed and the actions before it."""

    obs: np.ndarray
    episode: int
    seed: int
    actions: list[Any]  # the episode's action list (shared); the first ``t`` lead to ``obs``
    t: int
    step: int


def dagger(env: Any, source: FeedbackSource, budget: int, *, discrete: bool, n_actions: int | None = None,
           act_low: np.ndarray | None = None, act_high: np.ndarray | None = None,
           init_obs: np.ndarray | None = None, init_acts: np.ndarray | None = None, rounds: int = 5,
           seed: int = 0, env_id: str = "", run_id: str | None = None,
           settings: BCSettings | None = None, on_round: Callable[[DaggerResult], None] | None = None,
           device: str = "cpu") -> DaggerResult:
    """Run DAgger for ``budget`` labels (see the module docstring); returns the final BC fit and counts.

    Args:
        env: the environment the learner acts in (Gymnasium API).
        source: a demonstration teacher answering :class:`ActionQuery` (``data["action"]``).
        init_obs, init_acts: demonstrations to start from (BC on them before the first round), or None.
        rounds: refits; the budget is split evenly between them.
        device: where every refit trains (and the policy acts), a resolved device.
    """
    if budget < 1:
        raise ValueError(f"DAgger needs a budget of at least one label, got {budget}")
    if rounds < 1:
        raise ValueError(f"DAgger needs at least one round, got rounds={rounds}")
    rng = np.random.default_rng(seed)
    obs_rows: list[np.ndarray] = [] if init_obs is None else list(np.asarray(init_obs, np.float32))
    act_rows: list[Any] = [] if init_acts is None else list(np.asarray(init_acts))
    bc_kw = dict(discrete=discrete, n_actions=n_actions, act_low=act_low, act_high=act_high,
                 settings=settings or DAGGER_SETTINGS,
                 device=device)
    fit = train_bc(np.asarray(obs_rows), np.asarray(act_rows), seed=seed, **bc_kw) if obs_rows else None
    res = DaggerResult(bc=fit)  # type: ignore[arg-type]
    per_round = [budget // rounds + (1 if i < budget % rounds else 0) for i in range(rounds)]
    episode = 0

    def label(v: _Visit) -> Any:
        """Ask the teacher at one visited state; keep its answer (None for a skip)."""
        q = ActionQuery.make(np.asarray(v.obs), env_id, step=v.step, episode=v.episode, run_id=run_id,
                             seed=v.seed, actions=v.actions[:v.t])
        res.labels_asked += 1
        for fb in source.ask([q], step=v.step):
            if fb.data and "action" in fb.data:
                if fb.id is not None:
                    res.feedback_ids.append(int(fb.id))
                obs_rows.append(np.asarray(v.obs, np.float32))
                act_rows.append(fb.data["action"])
                res.labels_used += 1
                return fb.data["action"]
        return None

    def to_env(a: Any) -> Any:
        return int(a) if discrete else np.asarray(a, np.float32)

    for r, quota in enumerate(q for q in per_round if q > 0):
        if fit is None:  # the teacher's round: asked at every state, its answer executed
            ep_seed, ep_acts = int(rng.integers(2**31)), []
            obs, _ = env.reset(seed=ep_seed)
            asked = 0
            while asked < quota and not source.stopped:
                a = label(_Visit(np.asarray(obs), episode, ep_seed, ep_acts, len(ep_acts), res.env_steps))
                asked += 1
                a = env.action_space.sample() if a is None else to_env(a)  # a skip: act at random
                obs, _r, term, trunc, _ = env.step(a)
                ep_acts.append(int(a) if discrete else np.asarray(a, np.float64).tolist())
                res.env_steps += 1
                if term or trunc:
                    episode += 1
                    ep_seed, ep_acts = int(rng.integers(2**31)), []
                    obs, _ = env.reset(seed=ep_seed)
            episode += 1
        else:  # the learner's round: whole episodes of its own policy, labels at states drawn from them
            policy = fit.policy()
            visits: list[_Visit] = []
            while len(visits) < quota and len(visits) < ROLLOUT_CAP:
                ep_seed, ep_acts = int(rng.integers(2**31)), []
                obs, _ = env.reset(seed=ep_seed)
                done = False
                while not done and len(visits) < ROLLOUT_CAP:
                    visits.append(_Visit(np.asarray(obs), episode, ep_seed, ep_acts, len(ep_acts), res.env_steps))
                    a = to_env(policy(obs))
                    obs, _r, term, trunc, _ = env.step(a)
                    ep_acts.append(int(a) if discrete else np.asarray(a, np.float64).tolist())
                    res.env_steps += 1
                    done = term or trunc
                episode += 1
            for i in np.sort(rng.choice(len(visits), size=min(quota, len(visits)), replace=False)):
                if source.stopped:
                    break
                label(visits[int(i)])
        if source.stopped:
            res.stopped = True
        if obs_rows:
            fit = train_bc(np.asarray(obs_rows), np.asarray(act_rows), seed=seed + r + 1, **bc_kw)
            res.bc = fit
        res.rounds = r + 1
        res.history.append({"round": r + 1, "labels_asked": res.labels_asked, "labels_used": res.labels_used,
                            "env_steps": res.env_steps})
        if on_round is not None:
            on_round(res)
        if res.stopped:
            break
    if res.bc is None:
        raise ValueError("DAgger got no labels at all (every answer skipped?); nothing to train")
    return res
