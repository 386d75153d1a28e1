"""Feedback store: SQLite by default, PostgreSQL through the same code."""

from rlhf_gym.store.errors import AlreadyAnswered, ConsentError, KeyUsed, StoreError, UnsafeInputError
from rlhf_gym.store.store import FeedbackStore, hash_token, resolve_url

__all__ = ["AlreadyAnswered", "ConsentError", "FeedbackStore", "KeyUsed", "StoreError", "UnsafeInputError", "hash_token", "resolve_url"]
