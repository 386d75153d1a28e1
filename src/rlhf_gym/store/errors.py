"""What the store refuses, and why (every refusal leaves the store as it was).

Each refusal is its own class carrying ``http_status``, the HTTP code a web front end answers with,
so the web layer maps an error by its type, never by matching its message.
"""

from __future__ import annotations

from rlhf_gym.store.jsonsafe import UnsafeValue
from rlhf_gym.types import Feedback


class StoreError(ValueError):
    """Bad input to the store (unknown id, withdrawn annotator, missing consent). Nothing was written."""

    #: the HTTP status a web front end answers this refusal with
    http_status: int = 400


class UnknownQuery(StoreError):
    """No stored query has this id."""

    http_status = 404

    def __init__(self, query_id: str) -> None:
        super().__init__(f"unknown query id {query_id!r}")
        self.query_id = query_id


class UnknownAnnotator(StoreError):
    """No annotator has this id."""

    http_status = 404

    def __init__(self, annotator_id: str) -> None:
        super().__init__(f"unknown annotator {annotator_id!r}")
        self.annotator_id = annotator_id


class Withdrawn(StoreError):
    """This person has withdrawn: no feedback of theirs is accepted any more."""

    http_status = 403

    def __init__(self, annotator_id: str) -> None:
        super().__init__(f"annotator {annotator_id!r} has withdrawn; no feedback is accepted")
        self.annotator_id = annotator_id


class NotAssigned(StoreError):
    """The query is assigned to another annotator."""

    http_status = 403

    def __init__(self, query_id: str, annotator_id: str) -> None:
        super().__init__(f"query {query_id!r} is not assigned to annotator {annotator_id!r}")
        self.query_id, self.annotator_id = query_id, annotator_id


class CredentialEnded(StoreError):
    """The invite token or session the label came with was revoked, ended or expired before it was stored."""

    http_status = 401


class ConsentError(StoreError):
    """A person tried to give feedback without a recorded consent to the current text."""

    http_status = 403


class KeyConflict(StoreError):
    """This client key was already used by this person for another query."""

    def __init__(self, client_key: str) -> None:
        super().__init__(f"client key {client_key!r} was already used for another query")
        self.client_key = client_key


class AlreadyAnswered(StoreError):
    """This person already answered this query (the database allows one answer per person and query)."""

    http_status = 409

    def __init__(self, query_id: str, annotator_id: str, feedback_id: int | None = None) -> None:
        super().__init__(f"query {query_id!r} was already answered by {annotator_id!r}; nothing stored")
        self.query_id, self.annotator_id, self.feedback_id = query_id, annotator_id, feedback_id


class KeyUsed(StoreError):
    """This client key was already used by this person: ``feedback`` is the answer stored with it."""

    http_status = 409

    def __init__(self, client_key: str, feedback: Feedback) -> None:
        super().__init__(f"client key {client_key!r} was already used: this answer is stored once, as feedback "
                         f"{feedback.id}")
        self.feedback = feedback


class UnsafeInputError(StoreError):
    """A string or number that is not storable JSON (NaN, Infinity, NUL, lone surrogate); ``where`` names it."""

    http_status = 422

    def __init__(self, err: UnsafeValue) -> None:
        super().__init__(str(err))
        self.where = err.where
