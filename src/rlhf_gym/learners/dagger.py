"""DAgger: the learner acts, the teacher labels the states it visits, and the policy is refit on them all.

Each round runs episodes with a mixture policy (the teacher's label is executed with probability
``beta``, the learner's action otherwise; ``beta`` halves each round, starting at ``beta0``) and asks the
teacher "which action here?" (:class:`~rlhf_gym.types.ActionQuery`) at every visited state until the
round's share of the budget is used. Each query carries the episode's reset seed and the actions taken
so far in it, so a viewer (the web app) can replay the episode to that state and draw it. The budget
counts labels asked: skipped answers count too, since the teacher's time was spent. After each round the BC learner is refit on the initial demonstrations
plus every label so far (Ross, Gordon and Bagnell 2011).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.learners.bc import BCResult, BCSettings, train_bc
from rlhf_gym.types import ActionQuery


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


def dagger(env: Any, source: FeedbackSource, budget: int, *, discrete: bool, n_actions: int | None = None,
           act_low: np.ndarray | None = None, act_high: np.ndarray | None = None,
           init_obs: np.ndarray | None = None, init_acts: np.ndarray | None = None, rounds: int = 5,
           beta0: float = 1.0, seed: int = 0, env_id: str = "", run_id: str | None = None,
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
    rng = np.random.default_rng(seed)
    obs_rows: list[np.ndarray] = [] if init_obs is None else list(np.asarray(init_obs, np.float32))
    act_rows: list[Any] = [] if init_acts is None else list(np.asarray(init_acts))
    bc_kw = dict(discrete=discrete, n_actions=n_actions, act_low=act_low, act_high=act_high, settings=settings,
                 device=device)
    fit = train_bc(np.asarray(obs_rows), np.asarray(act_rows), seed=seed, **bc_kw) if obs_rows else None
    res = DaggerResult(bc=fit)  # type: ignore[arg-type]
    per_round = [budget // rounds + (1 if i < budget % rounds else 0) for i in range(rounds)]
    episode = 0
    ep_seed = int(rng.integers(2**31))
    ep_acts: list[Any] = []  # actions taken so far in this episode (with ep_seed: a replay to obs)
    obs, _ = env.reset(seed=ep_seed)
    for r, quota in enumerate(q for q in per_round if q > 0):
        beta = beta0 * 0.5 ** r if fit is not None else 1.0
        learner = fit.policy() if fit is not None else None
        asked = 0
        while asked < quota and not source.stopped:
            q = ActionQuery.make(np.asarray(obs), env_id, step=res.env_steps, episode=episode, run_id=run_id,
                                 seed=ep_seed, actions=ep_acts)
            answers = source.ask([q], step=res.env_steps)
            asked += 1
            res.labels_asked += 1
            label = None
            for fb in answers:
                if fb.data and "action" in fb.data:
                    label = fb.data["action"]
                    if fb.id is not None:
                        res.feedback_ids.append(int(fb.id))
                    obs_rows.append(np.asarray(obs, np.float32))
                    act_rows.append(label)
                    res.labels_used += 1
            if learner is None or (label is not None and rng.random() < beta):
                if label is None:  # nothing to execute yet: act at random
                    a: Any = env.action_space.sample()
                else:
                    a = int(label) if discrete else np.asarray(label, np.float32)
            else:
                a = learner(obs)
            if discrete:
                a = int(a)
            obs, _r, term, trunc, _ = env.step(a)
            ep_acts.append(a if discrete else np.asarray(a, np.float64).tolist())
            res.env_steps += 1
            if term or trunc:
                episode += 1
                ep_seed, ep_acts = int(rng.integers(2**31)), []
                obs, _ = env.reset(seed=ep_seed)
        if source.stopped:
            res.stopped = True
        if obs_rows:
            fit = train_bc(np.asarray(obs_rows), np.asarray(act_rows), seed=seed + r + 1, **bc_kw)
            res.bc = fit
        res.rounds = r + 1
        res.history.append({"round": r + 1, "labels_asked": res.labels_asked, "labels_used": res.labels_used,
                            "env_steps": res.env_steps, "beta": beta})
        if on_round is not None:
            on_round(res)
        if res.stopped:
            break
    if res.bc is None:
        raise ValueError("DAgger got no labels at all (every answer skipped?); nothing to train")
    return res
