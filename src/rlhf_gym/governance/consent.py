"""Purpose and consent: what a person reads and agrees to before giving any feedback.

The project owner sets these in ``rlhf-gym.toml`` (section ``[feedback]``); a sensible default is
used otherwise. The consent version is derived from the text, so changing the text asks again.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlhf_gym.store import FeedbackStore

DEFAULT_PURPOSE = (
    "Your answers teach a software agent to do a task in a simulated environment. They are used only to "
    "train and evaluate agents for this project."
)
DEFAULT_CONSENT = (
    "Taking part is voluntary. You are identified only by a pseudonymous id; no name or contact detail is "
    "kept. Your answers, with the time you gave them, are stored and used to train models. You may stop at "
    "any moment and withdraw every answer you gave: it is then excluded from all future training, and models "
    "trained on it are flagged and retrained without it."
)


@dataclass(frozen=True)
class FeedbackPolicy:
    """What the owner states to annotators, and what personal data is kept."""

    purpose: str = DEFAULT_PURPOSE
    consent_text: str = DEFAULT_CONSENT
    keep_contact: bool = False
    version_label: str | None = None

    def consent_record_text(self) -> str:
        """The exact text a person agrees to (purpose + consent); its hash is stored with the decision."""
        return self.purpose + "\n" + self.consent_text

    @property
    def consent_version(self) -> str:
        """An explicit label if set, else a short hash of purpose + text (so any edit asks again)."""
        if self.version_label:
            return self.version_label
        return "sha-" + hashlib.sha256((self.purpose + "\n" + self.consent_text).encode()).hexdigest()[:12]


def load_policy(path: str | Path | None = None) -> FeedbackPolicy:
    """Read ``[feedback]`` from ``path`` (default ``./rlhf-gym.toml`` if present), else the defaults.

    Only the command line calls this without a path; library functions take a policy or use the defaults.
    """
    p = Path(path) if path else Path("rlhf-gym.toml")
    if not p.exists():
        if path:
            raise FileNotFoundError(f"feedback policy file {p} not found")
        return FeedbackPolicy()
    data = tomllib.loads(p.read_text()).get("feedback", {})
    unknown = set(data) - {"purpose", "consent_text", "keep_contact", "consent_version"}
    if unknown:
        raise ValueError(f"{p}: unknown keys in [feedback]: {', '.join(sorted(unknown))}")
    return FeedbackPolicy(purpose=data.get("purpose", DEFAULT_PURPOSE),
                          consent_text=data.get("consent_text", DEFAULT_CONSENT),
                          keep_contact=bool(data.get("keep_contact", False)),
                          version_label=data.get("consent_version"))


def person_consents(store: FeedbackStore | None, annotator_id: str, policy: FeedbackPolicy | None,
                    input_fn: Callable[[str], str], out: Callable[[str], None],
                    consent_fn: Callable[[], bool] | None = None) -> bool:
    """Whether a person at the terminal takes part: ``consent_fn`` if given (tests, an embedding app), else
    the purpose and consent text shown and the answer recorded in ``store`` (which a person needs)."""
    if consent_fn is not None:
        return bool(consent_fn())
    if store is None:
        raise ValueError("a person giving feedback needs a store to record consent and answers")
    return ensure_terminal_consent(store, annotator_id, policy, input_fn=input_fn, out=out)


def ensure_terminal_consent(store: FeedbackStore, annotator_id: str, policy: FeedbackPolicy | None = None,
                            input_fn: Callable[[str], str] = input, out: Callable[[str], None] = print) -> bool:
    """Show purpose and consent text at the terminal unless this person already agreed to this version.

    Registers an unknown id as a person (kind ``human``), records the decision, and sets
    ``store.consent_version`` so the store refuses labels without it. Returns True when the person
    agreed; False when they declined or have withdrawn.
    """
    policy = policy or FeedbackPolicy()
    store.consent_version = policy.consent_version
    ann = store.annotator(annotator_id)
    if ann is None:  # a person at the terminal: register them (pseudonymous id only)
        store.add_annotator(annotator_id, kind="human")
    elif ann.withdrawn_at is not None:
        out(f"Annotator {annotator_id} has withdrawn; no feedback is asked or stored.")
        return False
    if store.has_consent(annotator_id, policy.consent_version):
        return True
    out(f"\nPurpose of this feedback:\n  {policy.purpose}\n\nConsent ({policy.consent_version}):\n  {policy.consent_text}\n")
    while True:
        ans = input_fn("Do you agree to take part? (yes/no) ").strip().lower()
        if ans in ("y", "yes"):
            store.record_consent(annotator_id, policy.consent_version, policy.consent_record_text(), True)
            return True
        if ans in ("n", "no"):
            store.record_consent(annotator_id, policy.consent_version, policy.consent_record_text(), False)
            out("No consent given: no feedback will be asked or stored.")
            return False
        from rlhf_gym.feedback.sources import echo

        out(f"Please answer yes or no (got {echo(ans)}).")
