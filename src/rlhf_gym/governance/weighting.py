"""Per-annotator weights on answers while a run trains (the ``annotator_weighting`` policy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlhf_gym.governance.bias import WeightPolicy
    from rlhf_gym.store import FeedbackStore


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
