"""A portable format for preference labels, and converters to other libraries' layouts.

One row per answer: annotator, query, references to both clips (episode id, start, length,
environment, seed), the label (1 left, 0 right, 0.5 tie), and the response time. Withdrawn and
skipped answers are left out. Converters:

- ``trl``: ``{"chosen": clip, "rejected": clip}`` as TRL's reward-model datasets are laid out
  (ties have no chosen side and are left out; the count is reported).
- ``imitation``: ``{"fragment1", "fragment2", "preference"}`` where each fragment has the fields
  of imitation's ``TrajectoryWithRew`` (``obs`` with one more entry than ``acts``, ``acts``,
  ``infos``, ``terminal``, ``rews``) and ``preference`` is the probability fragment 1 is preferred.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlhf_gym.types import PairQuery, Segment

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore

FORMATS = ("jsonl", "parquet", "trl", "imitation")


def _ref(seg: Segment) -> dict[str, Any]:
    return {"traj_id": seg.traj_id, "start": int(seg.start), "length": len(seg), "env_id": seg.env_id,
            "seed": seg.seed, "ends_inside": bool(seg.absorbing.any())}


def _clip(seg: Segment) -> dict[str, Any]:
    return {**_ref(seg), "obs": seg.obs.tolist(), "acts": seg.acts.tolist(), "rews": seg.rews.tolist(),
            "absorbing": seg.absorbing.tolist()}


def label_rows(store: FeedbackStore, run_id: str | None = None) -> list[tuple[dict[str, Any], PairQuery]]:
    """Portable rows (and their queries) for every stored, non-withdrawn, non-skipped pair label."""
    out = []
    for q, fb in store.labelled_pairs(run_id):
        assert q.left is not None and q.right is not None
        out.append(({"feedback_id": fb.id, "annotator": fb.annotator_id, "query_id": q.id, "run_id": q.run_id,
                     "left": _ref(q.left), "right": _ref(q.right), "label": fb.value,
                     "response_time_s": round(fb.answered_at - fb.asked_at, 3), "answered_at": fb.answered_at,
                     "step": fb.step}, q))
    return out


def to_trl(rows: list[tuple[dict[str, Any], PairQuery]]) -> tuple[list[dict[str, Any]], int]:
    """TRL chosen/rejected rows; returns (rows, ties left out)."""
    out, ties = [], 0
    for r, q in rows:
        assert q.left is not None and q.right is not None
        if r["label"] == 0.5:
            ties += 1
            continue
        left_won = r["label"] > 0.5
        chosen, rejected = (q.left, q.right) if left_won else (q.right, q.left)
        out.append({"chosen": _clip(chosen), "rejected": _clip(rejected), "annotator": r["annotator"],
                    "query_id": r["query_id"], "confidence": abs(r["label"] - 0.5) * 2})
    return out, ties


def _fragment(seg: Segment) -> dict[str, Any]:
    real = ~seg.absorbing
    obs = seg.obs[real].tolist() + [seg.next_obs[real][-1].tolist()] if real.any() else [seg.obs[0].tolist()]
    return {"obs": obs, "acts": seg.acts[real].tolist(), "infos": None, "terminal": bool(seg.absorbing.any()),
            "rews": seg.rews[real].tolist()}


def to_imitation(rows: list[tuple[dict[str, Any], PairQuery]]) -> list[dict[str, Any]]:
    """imitation's preference-dataset layout (fragment pairs + probability the first is preferred).

    imitation has no absorbing padding: a clip that ends inside is cut at the end and marked
    ``terminal``.
    """
    out = []
    for r, q in rows:
        assert q.left is not None and q.right is not None
        out.append({"fragment1": _fragment(q.left), "fragment2": _fragment(q.right), "preference": r["label"],
                    "annotator": r["annotator"], "query_id": r["query_id"]})
    return out


def export_labels(store: FeedbackStore, path: str | Path, fmt: str = "jsonl", run_id: str | None = None) -> dict[str, Any]:
    """Write the labels of ``store`` to ``path`` in ``fmt``; returns counts."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = label_rows(store, run_id)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"path": str(path), "format": fmt, "labels": len(rows)}
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise RuntimeError("Parquet export needs pyarrow: pip install 'rlhf-gym[parquet]'") from e
        pq.write_table(pa.Table.from_pylist([r for r, _ in rows]), path)
        return info
    if fmt == "jsonl":
        records = [r for r, _ in rows]
    elif fmt == "trl":
        records, ties = to_trl(rows)
        info["ties_left_out"] = ties
    else:
        records = to_imitation(rows)
    with path.open("w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    info["rows"] = len(records)
    store.audit("system", "labels.export", {"path": str(path), "format": fmt, "rows": len(records)})
    return info
