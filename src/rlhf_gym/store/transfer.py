"""Part of :class:`~rlhf_gym.store.FeedbackStore`: export and import of labels (JSONL) with their queries,
annotators and consent records, audited."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from rlhf_gym.store import audit
from rlhf_gym.store.audit import retry_conflicts
from rlhf_gym.store.errors import ConsentError, StoreError
from rlhf_gym.store.jsonsafe import clean_json
from rlhf_gym.store.schema import ConsentRow
from rlhf_gym.types import Feedback, Query


class TransferMixin:
    """Export and import (mixed into :class:`~rlhf_gym.store.FeedbackStore`)."""

    session: Any

    def export_records(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Every non-withdrawn answer with its query and its annotator (kind, and a person's consents).

        Carrying the annotator's kind and consent records lets :meth:`import_jsonl` keep the consent
        rule in the receiving store. No contact detail is ever exported.
        """
        fbs = self.feedback(run_id=run_id)
        queries: dict[str, dict[str, Any]] = {}
        anns: dict[str, dict[str, Any]] = {}
        out = []
        for fb in fbs:
            if fb.query_id not in queries:
                queries[fb.query_id] = self.query(fb.query_id).to_dict()
            if fb.annotator_id not in anns:
                row = self.annotator(fb.annotator_id)
                kind = row.kind if row is not None else "human"
                anns[fb.annotator_id] = {"id": fb.annotator_id, "kind": kind,
                                         "consents": self.consents(fb.annotator_id) if kind == "human" else []}
            out.append({"feedback": fb.to_dict(), "query": queries[fb.query_id], "annotator": anns[fb.annotator_id]})
        return out

    def export_jsonl(self, path: str | Path, run_id: str | None = None, actor: str = "system") -> int:
        """Write one JSON object per answer (with its query and annotator) to ``path``; audited.

        Withdrawn answers are left out. The audit entry records the file's SHA-256.
        """
        recs = self.export_records(run_id)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            for r in recs:
                try:
                    line = json.dumps(r, allow_nan=False)
                except ValueError:  # a row stored before inputs were checked: write valid JSON anyway
                    line = json.dumps(clean_json(r), allow_nan=False)
                f.write(line + "\n")
        self.audit(actor, "export.labels", {"path": str(path), "format": "jsonl", "rows": len(recs), "run": run_id,
                                            "sha256": _file_sha256(path)})
        return len(recs)

    def import_jsonl(self, path: str | Path, actor: str = "system", attest_consent: bool = False) -> int:
        """Read rows written by :meth:`export_jsonl`; returns the number of answers added.

        Every row is validated before anything is written. Annotators keep their kind; a row without
        one counts as a person (the safe choice). A person's labels are taken only with a consent on
        record: already in this store, carried in the file (imported and audited), or - with
        ``attest_consent=True`` - an owner's attestation that they hold it, recorded as a consent by
        ``actor`` and audited. Labels of people withdrawn in this store are skipped (and counted).
        """
        rows: list[tuple[Query, Feedback, dict[str, Any] | None]] = []
        with Path(path).open() as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    ann = d.get("annotator")
                    if ann is not None and (not isinstance(ann, dict) or ann.get("kind") not in ("human", "simulated")):
                        raise ValueError("annotator must be an object with kind 'human' or 'simulated'")
                    rows.append((Query.from_dict(d["query"]), Feedback.from_dict(d["feedback"]), ann))
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    raise StoreError(f"{path}:{n}: not a feedback row ({e})") from e
        kinds: dict[str, str] = {}
        file_consents: dict[str, list[dict[str, Any]]] = {}
        for _, fb, ann in rows:
            kind = ann["kind"] if ann else "human"
            if kinds.setdefault(fb.annotator_id, kind) != kind:
                raise StoreError(f"{path}: annotator {fb.annotator_id!r} is both human and simulated in the file")
            if ann and ann.get("consents"):
                file_consents[fb.annotator_id] = ann["consents"]
        withdrawn: set[str] = set()
        attest: list[str] = []
        missing: list[str] = []
        for aid, kind in kinds.items():
            row = self.annotator(aid)
            if row is not None:
                if row.kind != kind:
                    raise StoreError(f"{path}: annotator {aid!r} is {kind} in the file but {row.kind} in this store")
                if row.withdrawn_at is not None:
                    withdrawn.add(aid)
                    continue
            if kind != "human" or self._consent_ok_after_import(aid, file_consents.get(aid, [])):
                continue
            (attest if attest_consent else missing).append(aid)
        if missing:
            raise ConsentError(f"{path}: no recorded consent for person(s) {', '.join(sorted(missing))} (none in "
                               "this store, none in the file); nothing was imported. Import with "
                               "--attest-consent only if you hold their consent: the attestation is audited")
        n = 0
        for aid, kind in kinds.items():
            if aid in withdrawn:
                continue
            self.add_annotator(aid, kind=kind, actor=actor)
            if aid in file_consents:
                self._import_consents(aid, file_consents[aid], actor, str(path))
            if aid in attest:
                with self.session() as s, s.begin():
                    version = self.consent_version or "attested"
                    s.add(ConsentRow(annotator_id=aid, version=version, agreed=True, at=time.time(),
                                     text_hash=hashlib.sha256(f"attested by {actor} on import of {path}".encode())
                                     .hexdigest()))
                    audit.append(s, actor, "consent.attest", {"annotator": aid, "version": version,
                                                              "source": str(path)})
        skipped = 0
        for q, fb, _ in rows:
            if fb.annotator_id in withdrawn:
                skipped += 1
                continue
            self.add_queries([q], run_id=q.run_id)
            if not self.has_answer(fb.query_id, fb.annotator_id, fb.answered_at):
                self.add_feedback(Feedback(fb.query_id, fb.annotator_id, fb.value, fb.asked_at, fb.answered_at,
                                           fb.step, fb.data))
                n += 1
        self.audit(actor, "import", {"path": str(path), "rows": n, "skipped_withdrawn": skipped,
                                     "withdrawn_annotators": sorted(withdrawn), "attested": sorted(attest)})
        return n

    def _consent_ok_after_import(self, annotator_id: str, consents: list[dict[str, Any]]) -> bool:
        """Would this person pass the consent rule with the store's records plus ``consents``?"""
        if self.annotator(annotator_id) is not None:
            with self.session() as s:
                try:
                    self._check_consent(s, annotator_id)
                    return True
                except ConsentError:
                    pass
        relevant = [c for c in consents if self.consent_version is None or c.get("version") == self.consent_version]
        return bool(relevant) and bool(relevant[-1].get("agreed"))

    @retry_conflicts
    def _import_consents(self, annotator_id: str, consents: list[dict[str, Any]], actor: str, source: str) -> None:
        with self.session() as s, s.begin():
            have = {(c.version, c.at) for c in s.execute(
                select(ConsentRow).where(ConsentRow.annotator_id == annotator_id)).scalars()}
            for c in consents:
                try:
                    key = (str(c["version"]), float(c["at"]))
                    agreed, text_hash = bool(c["agreed"]), str(c.get("text_hash", ""))
                except (KeyError, TypeError, ValueError) as e:
                    raise StoreError(f"{source}: bad consent record for {annotator_id!r} ({e})") from e
                if key in have:
                    continue
                s.add(ConsentRow(annotator_id=annotator_id, version=key[0], agreed=agreed, at=key[1],
                                 text_hash=text_hash))
                audit.append(s, actor, "consent.import", {"annotator": annotator_id, "version": key[0],
                                                          "agreed": agreed, "at": key[1], "source": source})


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
