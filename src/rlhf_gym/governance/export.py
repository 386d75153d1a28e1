"""Exports of all labels (JSONL, Parquet) and of the audit log, each recorded in the audit log.

Withdrawn labels are never exported. Each audit entry names the file and its SHA-256, so a file
handed on can later be matched to the export that produced it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from rlhf_gym.store import FeedbackStore, StoreError

#: Flat columns of the Parquet label export (nested query/data are JSON strings).
PARQUET_COLUMNS = ("feedback_id", "query_id", "query_kind", "run_id", "annotator_id", "annotator_kind", "value",
                   "asked_at", "answered_at", "step", "data", "query")


def export_labels_jsonl(store: FeedbackStore, path: str | Path, run_id: str | None = None,
                        actor: str = "admin") -> int:
    """All non-withdrawn labels with their queries, one JSON object a line (re-importable)."""
    return store.export_jsonl(path, run_id=run_id, actor=actor)


def export_labels_parquet(store: FeedbackStore, path: str | Path, run_id: str | None = None,
                          actor: str = "admin") -> int:
    """All non-withdrawn labels as one flat Parquet table (needs ``pyarrow``: ``pip install rlhf-gym[parquet]``)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow is installed in the dev environment
        raise StoreError("Parquet export needs pyarrow: pip install 'rlhf-gym[parquet]'") from e
    recs = store.export_records(run_id)
    cols: dict[str, list[Any]] = {c: [] for c in PARQUET_COLUMNS}
    for r in recs:
        fb, q, ann = r["feedback"], r["query"], r["annotator"]
        for c, v in (("feedback_id", fb["id"]), ("query_id", fb["query_id"]), ("query_kind", q["kind"]),
                     ("run_id", q["run_id"]), ("annotator_id", fb["annotator_id"]), ("annotator_kind", ann["kind"]),
                     ("value", fb["value"]), ("asked_at", fb["asked_at"]), ("answered_at", fb["answered_at"]),
                     ("step", fb["step"]), ("data", None if fb["data"] is None else json.dumps(fb["data"])),
                     ("query", json.dumps(q))):
            cols[c].append(v)
    schema = pa.schema([("feedback_id", pa.int64()), ("query_id", pa.string()), ("query_kind", pa.string()),
                        ("run_id", pa.string()), ("annotator_id", pa.string()), ("annotator_kind", pa.string()),
                        ("value", pa.float64()), ("asked_at", pa.float64()), ("answered_at", pa.float64()),
                        ("step", pa.int64()), ("data", pa.string()), ("query", pa.string())])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols, schema=schema), path)
    store.audit(actor, "export.labels", {"path": str(path), "format": "parquet", "rows": len(recs), "run": run_id,
                                         "sha256": _sha256(path)})
    return len(recs)


def export_audit_log(store: FeedbackStore, path: str | Path, actor: str = "admin") -> int:
    """The whole audit log, one entry a line, with each entry's hash (checkable offline).

    The export's own audit entry comes after the last exported one and names its head (seq, hash).
    """
    entries = store.audit_entries()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")
    head = entries[-1] if entries else None
    store.audit(actor, "export.audit", {"path": str(path), "entries": len(entries), "sha256": _sha256(path),
                                        "head_seq": head and head["seq"], "head_hash": head and head["hash"]})
    return len(entries)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
