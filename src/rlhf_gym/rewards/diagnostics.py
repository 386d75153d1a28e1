"""Per-round reward-model diagnostics: held-out accuracy, ensemble disagreement, agreement with the true reward.

Held-out accuracy alone does not predict whether the policy will succeed (a model can rank the
clips it is shown perfectly and still be wrong about states those clips never reach), so the
correlation with the true reward on *fresh* rollouts of the current policy is reported too, where
the teacher is simulated and the true reward is meaningful.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rlhf_gym.rewards.models import RewardModel
from rlhf_gym.rewards.training import make_pair_data, member_logits, member_preferences, preference_accuracy
from rlhf_gym.types import Segment, Trajectory


@torch.no_grad()
def pair_accuracy(model: RewardModel, pairs: Sequence[tuple[Segment, Segment, float]]) -> tuple[int, int]:
    """(correct, counted): non-tie labelled pairs the ensemble's mean logit ranks correctly, and how many."""
    if not pairs:
        return 0, 0
    data = make_pair_data(model, pairs)
    logits = torch.stack([member_logits(m, data) for m in model.members]).mean(0)
    return preference_accuracy(logits, data.y)


def heldout_accuracy(model: RewardModel, pairs: Sequence[tuple[Segment, Segment, float]]) -> float | None:
    """Fraction of non-tie labelled pairs the ensemble mean ranks correctly (None if there are none)."""
    c, k = pair_accuracy(model, pairs)
    return c / k if k else None


def ensemble_disagreement(model: RewardModel, pairs: Sequence[tuple[Segment, Segment]]) -> float | None:
    """Mean over pairs of the members' standard deviation of ``P(left better)``."""
    if not pairs or len(model.members) < 2:
        return None
    return float(member_preferences(model, pairs).std(0).mean())


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def reward_correlation(model: RewardModel, trajs: Sequence[Trajectory], segment_length: int | None = None,
                       ) -> dict[str, float | None]:
    """Pearson correlation of learned and true reward on ``trajs`` (per step, and per clip return)."""
    if not trajs:
        return {"corr_step": None, "corr_clip": None}
    learned, true = [], []
    for t in trajs:
        learned.append(model.reward(t.obs[:-1], t.acts, t.obs[1:]))
        true.append(np.asarray(t.rews, np.float64))
    out: dict[str, float | None] = {"corr_step": _corr(np.concatenate(learned), np.concatenate(true))}
    if segment_length:
        lc, tc = [], []
        for lr, tr in zip(learned, true, strict=True):
            for s in range(0, max(len(tr) - segment_length + 1, 0), max(segment_length // 2, 1)):
                lc.append(lr[s:s + segment_length].sum())
                tc.append(tr[s:s + segment_length].sum())
        out["corr_clip"] = _corr(np.asarray(lc), np.asarray(tc))
    return out
