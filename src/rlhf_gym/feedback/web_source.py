"""People labelling in a browser, as a :class:`FeedbackSource` a training run can poll.

``post`` sends queries to a running ``rlhf-gym serve`` (admin API) and returns at once; ``poll``
fetches the answers that arrived since the last poll and returns them, each committed to the local
store first when one is given. Nothing here waits for a person: a server that is slow or down only
means fewer answers this poll (unsent queries are retried on the next call).

Restart-safe: the server stores queries by id, so posting one again adds nothing; answers are
fetched after a cursor (the server's feedback id) and an answer the local store already holds
(same query, annotator and answer time) is not added again, so a restarted run that re-polls from
the beginning neither loses nor duplicates answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.types import Feedback, Query

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore

log = logging.getLogger(__name__)


class WebSourceError(RuntimeError):
    """The server refused a request for a reason that retrying will not fix (bad token, bad query)."""


class WebSource(FeedbackSource):
    """Feedback from people using the annotation web app.

    Args:
        server: base URL of ``rlhf-gym serve``, e.g. ``http://127.0.0.1:8000``.
        token: the server's admin token.
        store: local store; answers are committed to it before ``poll`` returns them.
        run_id: the run the queries belong to (answers are fetched for this run only).
        annotator_id: give every query to this one annotator; ``None`` offers them to every annotator.
        env_id: environment of evaluative step queries, used by the server to draw frames
            (default: the ``env`` of the run's config in the local store).
        timeout: seconds one HTTP request may take before this poll gives up on it.
    """

    simulated = False

    def __init__(self, server: str, token: str, store: FeedbackStore | None = None, run_id: str | None = None,
                 annotator_id: str | None = None, env_id: str | None = None, timeout: float = 5.0,
                 page_size: int = 500) -> None:
        super().__init__(annotator_id, store=store, run_id=run_id)  # type: ignore[arg-type]
        import httpx

        if not server.startswith(("http://", "https://")):
            raise ValueError(f"--server must be an http(s) URL, got {server!r}")
        if not token:
            raise ValueError("the web teacher needs the server's admin token (--token or RLHF_GYM_ADMIN_TOKEN)")
        self.server = server.rstrip("/")
        self.env_id = env_id or self._env_from_store()
        self.page_size = page_size
        self._http = httpx.Client(base_url=self.server, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})
        self._unsent: dict[str, Query] = {}
        self._known: dict[str, Query] = {}
        self.cursor = 0
        self._seen_remote: set[int] = set()
        if store is not None and annotator_id is not None:
            store.add_annotator(annotator_id, kind="human")
        self.last_error: str | None = None

    def _env_from_store(self) -> str | None:
        if self.store is None or self.run_id is None:
            return None
        from rlhf_gym.store.schema import RunRow

        with self.store.session() as s:
            run = s.get(RunRow, self.run_id)
            cfg = (run.config or {}) if run is not None else {}
        env = cfg.get("env") or cfg.get("env_id")
        return str(env) if env else None

    # -- FeedbackSource ------------------------------------------------------------------------
    def _submit(self, queries: list[Query]) -> None:
        for q in queries:
            self._known[q.id] = q
            self._unsent[q.id] = q
        self._flush()

    def _flush(self) -> None:
        """Send queries not yet acknowledged by the server; keep them for the next call on failure."""
        import httpx

        while self._unsent:
            batch = list(self._unsent.values())[:200]
            body: dict[str, Any] = {"run_id": self.run_id, "assigned_to": self.annotator_id,
                                    "env_id": self.env_id, "queries": [q.to_dict() for q in batch]}
            try:
                r = self._http.post("/api/admin/queries", json=body)
            except httpx.HTTPError as e:
                self._warn(f"could not reach {self.server} to post {len(batch)} queries ({e}); retrying later")
                return
            if r.status_code >= 500:
                self._warn(f"{self.server} answered {r.status_code} to posting queries; retrying later")
                return
            if r.status_code >= 400:
                raise WebSourceError(f"{self.server} refused the queries ({r.status_code}): {_detail(r)}")
            for q in batch:
                self._unsent.pop(q.id, None)

    def _collect(self, step: int | None) -> list[Feedback]:
        import httpx

        self._flush()
        out: list[Feedback] = []
        while True:
            params: dict[str, Any] = {"since": self.cursor, "limit": self.page_size}
            if self.run_id is not None:
                params["run_id"] = self.run_id
            try:
                r = self._http.get("/api/admin/answers", params=params)
            except httpx.HTTPError as e:
                self._warn(f"could not reach {self.server} for answers ({e}); trying again next poll")
                return out
            if r.status_code >= 500:
                self._warn(f"{self.server} answered {r.status_code} when asked for answers")
                return out
            if r.status_code >= 400:
                raise WebSourceError(f"{self.server} refused to list answers ({r.status_code}): {_detail(r)}")
            page = r.json()
            for a in page["answers"]:
                fb = self._accept(a)
                if fb is not None:
                    out.append(fb)
            self.cursor = max(self.cursor, int(page["cursor"]))
            if len(page["answers"]) < self.page_size:
                return out

    def _accept(self, a: dict[str, Any]) -> Feedback | None:
        """Turn one server answer into a Feedback, or None if it is not ours or already stored here."""
        rid = int(a["id"])
        if rid in self._seen_remote:
            return None
        qid = a["query_id"]
        if qid not in self._known and not self._store_has_query(qid):
            return None  # an answer to a query some other run or source posted
        self._seen_remote.add(rid)
        fb = Feedback(qid, a["annotator_id"], a["value"], float(a["asked_at"]), float(a["answered_at"]),
                      a.get("step"), a.get("data"))
        if self.store is not None:
            if self._already_stored(fb):
                return None
            self._mirror_annotator(a)
            cv = self.store.consent_version
            if cv is not None and not self.store.has_consent(fb.annotator_id, cv):
                self._warn(f"answer {rid} from {fb.annotator_id!r} left out: no consent to version {cv!r} here "
                           f"(the server recorded {a.get('consent_version')!r})")
                return None
        return fb

    def _store_has_query(self, qid: str) -> bool:
        if self.store is None:
            return False
        from rlhf_gym.store.schema import QueryRow

        with self.store.session() as s:
            return s.get(QueryRow, qid) is not None

    def _already_stored(self, fb: Feedback) -> bool:
        from sqlalchemy import select

        from rlhf_gym.store.schema import FeedbackRow

        assert self.store is not None
        with self.store.session() as s:
            return s.execute(select(FeedbackRow.id).where(
                FeedbackRow.query_id == fb.query_id, FeedbackRow.annotator_id == fb.annotator_id,
                FeedbackRow.answered_at == fb.answered_at)).first() is not None

    def _mirror_annotator(self, a: dict[str, Any]) -> None:
        """Make the server's annotator (and the consent they gave there) known to the local store."""
        assert self.store is not None
        aid = a["annotator_id"]
        self.store.add_annotator(aid, kind="human", actor="web")
        version = a.get("consent_version")
        if version and self.store.consent_version in (None, version) and not self.store.has_consent(aid, version):
            self.store.record_consent(aid, version, f"agreed in the annotation app at {self.server}", True)

    def _warn(self, msg: str) -> None:
        if msg != self.last_error:
            log.warning(msg)
        self.last_error = msg

    def resume(self, queries: Sequence[Query]) -> None:
        """After a restart: wait again for these queries (already posted; posting again is a no-op)."""
        self.post(queries)

    def close(self) -> None:
        super().close()
        self._http.close()


def _detail(r: Any) -> str:
    try:
        d = r.json().get("detail")
    except Exception:
        return r.text[:300]
    if isinstance(d, dict):
        return str(d.get("message", d))
    return str(d)
