"""Part of :class:`~rlhf_gym.store.FeedbackStore`: models with the feedback that trained them (lineage),
and withdrawal, which flags every model trained on a person's labels."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from rlhf_gym.store import audit
from rlhf_gym.store.audit import retry_conflicts
from rlhf_gym.store.errors import StoreError
from rlhf_gym.store.schema import AnnotatorRow, FeedbackRow, LineageRow, ModelRow, RunRow
from rlhf_gym.store.sessions import _end_sessions
from rlhf_gym.types import new_id


class LineageMixin:
    """Withdrawal, models and lineage (mixed into :class:`~rlhf_gym.store.FeedbackStore`)."""

    session: Any

    @retry_conflicts
    def withdraw_annotator(self, annotator_id: str, actor: str = "admin", reason: str = "") -> dict[str, Any]:
        """Exclude every label of this person from now on and flag every model trained on them.

        Their invite token is revoked and every session of theirs ends in the same transaction.
        """
        with self.session() as s, s.begin():
            ann = s.get(AnnotatorRow, annotator_id)
            if ann is None:
                raise StoreError(f"unknown annotator {annotator_id!r}")
            ann.withdrawn_at = ann.withdrawn_at or time.time()
            ann.token_hash = None
            sessions = _end_sessions(s, annotator_id)
            if ann.meta and "contact" in ann.meta:  # personal data is not kept past withdrawal
                ann.meta = {k: v for k, v in ann.meta.items() if k != "contact"}
            ids = list(s.execute(select(FeedbackRow.id).where(FeedbackRow.annotator_id == annotator_id)).scalars())
            s.execute(update(FeedbackRow).where(FeedbackRow.annotator_id == annotator_id).values(withdrawn=True))
            model_ids = sorted(set(s.execute(select(LineageRow.model_id).where(LineageRow.feedback_id.in_(ids))).scalars())) if ids else []
            for mid in model_ids:
                m = s.get(ModelRow, mid)
                m.flagged = f"trained on feedback withdrawn by {annotator_id}"
            audit.append(s, actor, "annotator.withdraw", {"annotator": annotator_id, "labels": len(ids),
                                                          "models_flagged": model_ids, "reason": reason,
                                                          "sessions_ended": sessions})
        return {"annotator": annotator_id, "labels_withdrawn": len(ids), "models_flagged": model_ids,
                "sessions_ended": sessions}

    @retry_conflicts
    def record_model(self, path: str | Path, feedback_ids: Iterable[int], kind: str = "reward",
                     run_id: str | None = None, model_id: str | None = None,
                     derived_from: Iterable[str] = ()) -> str:
        """Register a trained model with the ids of the feedback that trained it (lineage).

        ``derived_from`` names models it was built on (a policy trained on a reward model): their
        lineage is added to its own, so withdrawing a person flags the policy as well.
        """
        mid = model_id or new_id(kind)
        ids_set = {int(i) for i in feedback_ids}
        for parent in derived_from:
            if self.model(parent) is None:
                raise StoreError(f"unknown model {parent!r} in derived_from")
            ids_set.update(self.lineage(parent))
        ids = sorted(ids_set)
        with self.session() as s, s.begin():
            if run_id is not None and s.get(RunRow, run_id) is None:
                s.add(RunRow(id=run_id, created_at=time.time()))
                s.flush()
            # a model registered after a withdrawal but trained on the withdrawn labels is flagged too
            gone = sorted(set(s.execute(select(FeedbackRow.annotator_id).where(
                FeedbackRow.id.in_(ids), FeedbackRow.withdrawn.is_(True))).scalars())) if ids else []
            flagged = f"trained on feedback withdrawn by {', '.join(gone)}" if gone else None
            s.add(ModelRow(id=mid, run_id=run_id, kind=kind, path=str(path), created_at=time.time(), flagged=flagged))
            s.flush()
            s.add_all([LineageRow(model_id=mid, feedback_id=i) for i in ids])
            audit.append(s, "system", "model.train", {"model": mid, "kind": kind, "labels": len(ids)})
        return mid

    def models(self, flagged_only: bool = False) -> list[ModelRow]:
        with self.session() as s:
            q = select(ModelRow)
            if flagged_only:
                q = q.where(ModelRow.flagged.is_not(None))
            return list(s.execute(q.order_by(ModelRow.created_at)).scalars())

    def model(self, model_id: str) -> ModelRow | None:
        with self.session() as s:
            return s.get(ModelRow, model_id)

    def lineage(self, model_id: str) -> list[int]:
        with self.session() as s:
            return sorted(s.execute(select(LineageRow.feedback_id).where(LineageRow.model_id == model_id)).scalars())

    def models_using(self, annotator_id: str) -> list[str]:
        """Ids of every model trained on at least one label of this annotator."""
        with self.session() as s:
            q = (select(LineageRow.model_id).join(FeedbackRow, FeedbackRow.id == LineageRow.feedback_id)
                 .where(FeedbackRow.annotator_id == annotator_id).distinct())
            return sorted(s.execute(q).scalars())
