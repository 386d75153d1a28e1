"""People labelling in a browser, as a :class:`FeedbackSource` a training run can poll.

``post`` sends queries to a running ``rlhf-gym serve`` (admin API) and returns at once; ``poll``
fetches the answers that arrived since the last poll and returns them, each committed to the local
store first when one is given. Nothing here waits for a person.

A server error (5xx) or an unreachable server is never read as "no answers": the request is retried
with exponential backoff (``retries`` times, starting at ``backoff`` seconds, each retry logged), and
when it still fails :class:`WebServerError` is raised naming the route, the status and the server's
message, so the training run stops with that error instead of training on silence.

Restart-safe: the server stores queries by id, so posting one again adds nothing; answers are
fetched after a cursor (the server's feedback id) and an answer the local store already holds
(same query, annotator and answer time) is not added again, so a restarted run that re-polls from
the beginning neither loses nor duplicates answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.types import Feedback, Query

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore

log = logging.getLogger(__name__)


class WebSourceError(RuntimeError):
    """The server refused a request for a reason that retrying will not fix (bad token, bad query)."""


class WebServerError(WebSourceError):
    """The server kept failing (5xx) or could not be reached, after every retry."""


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
        timeout: seconds one HTTP request may take before it counts as failed.
        retries: how many times a failed request (5xx, unreachable) is retried before raising.
        backoff: seconds before the first retry; doubled for each further one.
        log: where warnings a person running the job should see go (default: this module's logger).
    """

    #: after this many answers that are all skips, the run is warned (people letting steps pass)
    SKIP_WARN_AFTER = 5

    simulated = False

    def __init__(self, server: str, token: str, store: FeedbackStore | None = None, run_id: str | None = None,
                 annotator_id: str | None = None, env_id: str | None = None, timeout: float = 5.0,
                 page_size: int = 500, retries: int = 5, backoff: float = 0.25,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(annotator_id, store=store, run_id=run_id)  # type: ignore[arg-type]
        import httpx

        if not server.startswith(("http://", "https://")):
            raise ValueError(f"--server must be an http(s) URL, got {server!r}")
        if not token:
            raise ValueError("the web teacher needs the server's admin token (--token or RLHF_GYM_ADMIN_TOKEN)")
        self.server = server.rstrip("/")
        self.env_id = env_id or self._env_from_store()
        self.page_size = page_size
        if retries < 0 or backoff < 0:
            raise ValueError(f"retries and backoff must be >= 0, got {retries} and {backoff}")
        self.retries, self.backoff = int(retries), float(backoff)
        self._log = log
        #: answers received so far, and how many of them were skips (value None)
        self.answers_seen = 0
        self.skips_seen = 0
        self._skip_warned = False
        #: every failed attempt so far, as text (what the run reports)
        self.errors: list[str] = []
        self._http = httpx.Client(base_url=self.server, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})
        self._unsent: dict[str, Query] = {}
        self._known: dict[str, Query] = {}
        self.cursor = 0
        self._seen_remote: set[int] = set()
        #: answers taken from pages already read when a later page failed: handed over by the next poll
        self._carry: list[Feedback] = []
        if store is not None and annotator_id is not None:
            store.add_annotator(annotator_id, kind="human")
        self.last_error: str | None = None

    def _env_from_store(self) -> str | None:
        if self.store is None or self.run_id is None:
            return None
        return self.store.run_env(self.run_id)

    def _request(self, method: str, path: str, what: str, **kw: Any) -> Any:
        """One admin API call, retried with backoff on a 5xx or a network error; raises when it keeps failing."""
        import httpx

        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                r = self._http.request(method, path, **kw)
            except httpx.HTTPError as e:
                problem = f"could not reach {self.server} to {what} ({type(e).__name__}: {e})"
            else:
                if r.status_code < 500:
                    if r.status_code >= 400:
                        raise WebSourceError(f"{self.server} refused to {what} ({r.status_code}): {_detail(r)}")
                    return r
                problem = f"{self.server} answered {r.status_code} when asked to {what}: {_detail(r)}"
            self.errors.append(problem)
            if attempt == self.retries:
                raise WebServerError(f"{problem}; gave up after {self.retries + 1} attempts (the run stops "
                                     "rather than read a failing server as 'no answers')")
            self._warn(f"{problem}; retry {attempt + 1}/{self.retries} in {delay:.2g} s")
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    # -- FeedbackSource ------------------------------------------------------------------------
    def _submit(self, queries: list[Query]) -> None:
        for q in queries:
            self._known[q.id] = q
            self._unsent[q.id] = q
        self._flush()

    def _flush(self) -> None:
        """Send queries not yet acknowledged by the server; keep them for the next call on failure."""
        while self._unsent:
            batch = list(self._unsent.values())[:200]
            body: dict[str, Any] = {"run_id": self.run_id, "assigned_to": self.annotator_id,
                                    "env_id": self.env_id, "queries": [q.to_dict() for q in batch]}
            self._request("POST", "/api/admin/queries", f"take {len(batch)} queries", json=body)
            for q in batch:
                self._unsent.pop(q.id, None)

    def _collect(self, step: int | None) -> list[Feedback]:
        self._flush()
        out = self._carry  # the cursor is past these: keep them until they are handed over
        while True:
            params: dict[str, Any] = {"since": self.cursor, "limit": self.page_size}
            if self.run_id is not None:
                params["run_id"] = self.run_id
            page = self._request("GET", "/api/admin/answers", "list answers", params=params).json()
            for a in page["answers"]:
                fb = self._accept(a)
                if fb is not None:
                    out.append(fb)
            self.cursor = max(self.cursor, int(page["cursor"]))
            if len(page["answers"]) < self.page_size:
                self._carry = []
                self._check_skips(out)
                return out

    def _check_skips(self, got: list[Feedback]) -> None:
        """Warn once when every answer so far is a skip: people are letting steps pass, not judging them."""
        self.answers_seen += len(got)
        self.skips_seen += sum(1 for f in got if f.value is None)
        if (not self._skip_warned and self.answers_seen >= self.SKIP_WARN_AFTER
                and self.skips_seen == self.answers_seen):
            self._skip_warned = True
            self._say(f"WARNING: all {self.answers_seen} answers from {self.server} so far are skips (no label). "
                      "People may be letting steps pass at a playing speed; ask them to pause (space) and mark "
                      "each step, or the run learns nothing from them")

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
        return self.store is not None and self.store.has_query(qid)

    def _already_stored(self, fb: Feedback) -> bool:
        assert self.store is not None
        return self.store.has_answer(fb.query_id, fb.annotator_id, fb.answered_at)

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
            self._say(msg)
        self.last_error = msg

    def _say(self, msg: str) -> None:
        if self._log is not None:
            self._log(msg)
        else:
            log.warning(msg)

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
