"""Feedback store: SQLite by default, PostgreSQL through the same code."""

from rlhf_gym.store.store import (
    AlreadyAnswered,
    ConsentError,
    FeedbackStore,
    KeyUsed,
    StoreError,
    UnsafeInputError,
    hash_token,
    resolve_url,
)

__all__ = ["AlreadyAnswered", "ConsentError", "FeedbackStore", "KeyUsed", "StoreError", "UnsafeInputError", "hash_token", "resolve_url"]
