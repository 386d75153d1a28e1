"""What the store refuses, and why (every refusal leaves the store as it was)."""

from __future__ import annotations

from rlhf_gym.store.jsonsafe import UnsafeValue
from rlhf_gym.types import Feedback


class StoreError(ValueError):
    """Bad input to the store (unknown id, withdrawn annotator, missing consent). Nothing was written."""


class ConsentError(StoreError):
    """A person tried to give feedback without a recorded consent to the current text."""


class AlreadyAnswered(StoreError):
    """This person already answered this query (the database allows one answer per person and query)."""

    def __init__(self, query_id: str, annotator_id: str) -> None:
        super().__init__(f"query {query_id!r} was already answered by {annotator_id!r}; nothing stored")
        self.query_id, self.annotator_id = query_id, annotator_id


class KeyUsed(StoreError):
    """This client key was already used by this person: ``feedback`` is the answer stored with it."""

    def __init__(self, client_key: str, feedback: Feedback) -> None:
        super().__init__(f"client key {client_key!r} was already used: this answer is stored once, as feedback "
                         f"{feedback.id}")
        self.feedback = feedback


class UnsafeInputError(StoreError):
    """A string or number that is not storable JSON (NaN, Infinity, NUL, lone surrogate); ``where`` names it."""

    def __init__(self, err: UnsafeValue) -> None:
        super().__init__(str(err))
        self.where = err.where
