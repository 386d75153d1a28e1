"""Inviting, listing and withdrawing annotators: the owner's side of consent and withdrawal."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

from rlhf_gym.governance.consent import FeedbackPolicy
from rlhf_gym.store import FeedbackStore, StoreError
from rlhf_gym.types import new_id


def invite_annotator(store: FeedbackStore, annotator_id: str | None = None, *, role: str = "annotator",
                     contact: str | None = None, policy: FeedbackPolicy | None = None,
                     actor: str = "admin", ttl: float | None = None) -> tuple[str, str]:
    """Create a person (kind ``human``) with a fresh random token; returns ``(id, token)``.

    Only the token's hash is stored, so the token is shown once. A contact detail is kept only when
    the owner's policy says ``keep_contact = true``; otherwise passing one is an error. The person
    still has to agree to the consent text before their first label. With ``ttl`` (seconds) the
    token stops working that long from now.
    """
    if role not in ("annotator", "admin"):
        raise StoreError(f"role must be 'annotator' or 'admin', got {role!r}")
    policy = policy or FeedbackPolicy()
    if contact and not policy.keep_contact:
        raise StoreError("contact details are not kept under this feedback policy (keep_contact = false in "
                         "rlhf-gym.toml [feedback]); annotators are pseudonymous ids")
    aid = annotator_id or new_id("person")
    if store.annotator(aid) is not None:
        raise StoreError(f"annotator {aid!r} already exists; choose another id")
    token = secrets.token_urlsafe(24)
    store.add_annotator(aid, kind="human", token=token, role=role, meta={"contact": contact} if contact else None,
                        actor=actor, token_ttl=ttl)
    return aid, token


def invite_link(server_url: str, token: str) -> str:
    """The link a person opens in the web app (``SERVER/?token=...``)."""
    return server_url.rstrip("/") + "/?token=" + token


def annotator_summaries(store: FeedbackStore) -> list[dict[str, Any]]:
    """One row per annotator: kind, role, consent state, labels kept and withdrawn, models using them.

    Contact details are never listed.
    """
    kept_ids = {fb.id for fb in store.feedback()}
    kept: Counter[str] = Counter()
    withdrawn: Counter[str] = Counter()
    for fb in store.feedback(include_withdrawn=True):
        (kept if fb.id in kept_ids else withdrawn)[fb.annotator_id] += 1
    out = []
    for a in store.annotators():
        out.append({"id": a.id, "kind": a.kind, "role": a.role, "created_at": a.created_at,
                    "withdrawn_at": a.withdrawn_at, "consent": store.consent_status(a.id),
                    "labels": kept.get(a.id, 0), "labels_withdrawn": withdrawn.get(a.id, 0),
                    "has_contact": bool(a.meta and a.meta.get("contact")),
                    "models_using": store.models_using(a.id)})
    return out
