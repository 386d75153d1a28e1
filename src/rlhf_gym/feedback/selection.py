"""Which clip pairs to ask about, and how many per round.

Candidates are random clips cut from recent rollouts (padded with the absorbing state past a
termination). From many candidates a few are chosen: uniformly, by ensemble disagreement (the
members' ``P(left)`` differ most: where the reward model is unsure *and* the members see it
differently), or by entropy (mean ``P(left)`` closest to 0.5).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from rlhf_gym.rewards.training import member_preferences
from rlhf_gym.rollouts import segment_at
from rlhf_gym.types import Segment, Trajectory

log = logging.getLogger(__name__)

SELECTION_METHODS = ("uniform", "disagreement", "entropy")


def _starts(traj: Trajectory, length: int) -> int:
    n = len(traj)
    if n == 0:
        return 0
    return n if traj.terminated else max(0, n - length + 1)


def usable_length(trajs: Sequence[Trajectory], length: int) -> int:
    """``length``, or the longest clip the trajectories allow (with a warning) where they are too short."""
    if any(_starts(t, length) for t in trajs):
        return length
    longest = max((len(t) for t in trajs), default=0)
    if longest == 0:
        raise ValueError("no steps collected: cannot cut clips for preference queries")
    log.warning("segment length %d is longer than every collected (unterminated) episode; using %d instead",
                length, longest)
    return longest


def sample_segments(trajs: Sequence[Trajectory], n: int, length: int, rng: np.random.Generator) -> list[Segment]:
    """``n`` random clips of ``length`` steps (shortened with a warning where no episode is long enough)."""
    length = usable_length(trajs, length)
    weights = np.array([_starts(t, length) for t in trajs], dtype=float)
    idx = rng.choice(len(trajs), size=n, p=weights / weights.sum())
    out = []
    for i in idx:
        t = trajs[int(i)]
        out.append(segment_at(t, int(rng.integers(_starts(t, length))), length))
    return out


def candidate_pairs(trajs: Sequence[Trajectory], n: int, length: int,
                    rng: np.random.Generator) -> list[tuple[Segment, Segment]]:
    """``n`` random pairs of clips."""
    segs = sample_segments(trajs, 2 * n, length, rng)
    return [(segs[2 * i], segs[2 * i + 1]) for i in range(n)]


def select_pairs(pairs: Sequence[tuple[Segment, Segment]], k: int, method: str, rng: np.random.Generator,
                 model: object | None = None) -> list[int]:
    """Indices of the ``k`` pairs to ask about, chosen by ``method`` (uniform without a trained model)."""
    if method not in SELECTION_METHODS:
        raise ValueError(f"query selection must be one of {', '.join(SELECTION_METHODS)}, got {method!r}")
    k = min(k, len(pairs))
    if k <= 0:
        return []
    if method == "uniform" or model is None or not bool(getattr(model, "fitted", True)):
        return [int(i) for i in rng.choice(len(pairs), size=k, replace=False)]
    p = member_preferences(model, pairs)
    if method == "disagreement":
        score = p.std(0)
    else:
        m = np.clip(p.mean(0), 1e-6, 1 - 1e-6)
        score = -(m * np.log(m) + (1 - m) * np.log(1 - m))
    score = score + 1e-9 * rng.random(len(score))  # random tie-break
    return [int(i) for i in np.argsort(-score)[:k]]


def query_schedule(budget: int, rounds: int, kind: str = "front") -> list[int]:
    """Labels to ask for in each round, summing to ``budget``.

    ``front``: more labels early, when the reward model knows least (weights ``rounds, rounds-1, ..., 1``);
    ``fixed``: the same number each round. Rounds that would get none are dropped.
    """
    if budget <= 0 or rounds <= 0:
        return []
    rounds = min(rounds, budget)
    if kind == "fixed":
        w = np.ones(rounds)
    elif kind == "front":
        w = np.arange(rounds, 0, -1, dtype=float)
    else:
        raise ValueError(f"query schedule must be 'front' or 'fixed', got {kind!r}")
    raw = budget * w / w.sum()
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes))[: budget - sizes.sum()]:
        sizes[i] += 1
    sizes = np.maximum(sizes, 0)
    # keep every round at >= 1 label by taking from the largest rounds
    while (sizes == 0).any() and sizes.max() > 1:
        sizes[np.argmax(sizes)] -= 1
        sizes[np.argmin(sizes)] += 1
    out = [int(s) for s in sizes if s > 0]
    assert sum(out) == budget
    return out


def default_rounds(budget: int) -> int:
    """Feedback rounds for a budget: about one per 2 labels, between 1 and 10. (One per 4 until 2026-12-08:
    at 10 CartPole labels, 3 rounds left the policy's later, drifting behaviour unlabelled.)"""
    return max(1, min(10, math.ceil(budget / 2)))
