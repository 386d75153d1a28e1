"""Attention checks: pair queries with a known answer that the owner mixes into the queue."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlhf_gym.store import FeedbackStore
from rlhf_gym.types import PairQuery, Segment


def add_gold_pairs(store: FeedbackStore, pairs: Sequence[tuple[Segment, Segment]], rng: np.random.Generator,
                   run_id: str | None = None, actor: str = "admin") -> list[str]:
    """Store one gold query per ``(better, worse)`` pair; returns the query ids.

    The better clip is put on the left or the right at random (``rng``), so attention checks do not
    teach or reward a side. Each gold answer is recorded with :meth:`FeedbackStore.set_gold` (audited).
    """
    ids = []
    for better, worse in pairs:
        left_better = bool(rng.random() < 0.5)
        q = PairQuery.make(better, worse, run_id) if left_better else PairQuery.make(worse, better, run_id)
        store.add_queries([q], run_id=run_id)
        store.set_gold(q.id, 1.0 if left_better else 0.0, actor=actor)
        ids.append(q.id)
    return ids
