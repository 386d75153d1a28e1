"""How much annotators agree: with each other (Cohen's and Fleiss' kappa), with the consensus, with
the current reward model; how many labels each gives, when, and how they are distributed.

Labels are compared as categories: ``1`` (left clip / good action), ``0`` (right clip / bad action)
and ``0.5`` (equally good). Skipped answers and demonstrations are left out. When a person answered
the same query twice, their latest answer counts.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from rlhf_gym.store import FeedbackStore
from rlhf_gym.store.schema import QueryRow
from rlhf_gym.types import PairQuery

#: Predicts P(left clip is better) for a pair query, e.g. a trained reward model's Bradley-Terry output.
RewardFn = Callable[[PairQuery], float]


@dataclass(frozen=True)
class Label:
    """One stored answer, reduced to what the agreement and bias statistics need."""

    feedback_id: int | None
    query_id: str
    annotator_id: str
    kind: str  # step | pair | demo
    value: float | None
    asked_at: float
    answered_at: float
    response_s: float

    @property
    def category(self) -> float | None:
        """1 (left/good), 0 (right/bad), 0.5 (tie) or None (skipped, demonstration)."""
        return category(self.value) if self.kind in ("pair", "step") else None


def category(value: float | None) -> float | None:
    if value is None:
        return None
    return 1.0 if value > 0.5 else (0.0 if value < 0.5 else 0.5)


def load_labels(store: FeedbackStore, run_id: str | None = None) -> list[Label]:
    """Every non-withdrawn answer in the store (optionally of one run), oldest first.

    Response time is ``answered_at - asked_at`` unless the source stored a measured one in
    ``data["response_s"]`` (the time from showing the query to the answer).
    """
    with store.session() as s:  # ids and kinds only: query payloads (clips) can be large
        q = select(QueryRow.id, QueryRow.kind)
        if run_id is not None:
            q = q.where(QueryRow.run_id == run_id)
        kinds = {qid: kind for qid, kind in s.execute(q)}
    out = []
    for fb in store.feedback(run_id=run_id):
        rt = fb.answered_at - fb.asked_at
        if fb.data and isinstance(fb.data.get("response_s"), int | float):
            rt = float(fb.data["response_s"])
        out.append(Label(fb.id, fb.query_id, fb.annotator_id, kinds.get(fb.query_id, "step"), fb.value,
                         fb.asked_at, fb.answered_at, rt))
    return out


def latest_categories(labels: Iterable[Label]) -> dict[str, dict[str, float]]:
    """annotator -> query -> category of their latest answer (skips and demonstrations left out)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for lab in sorted(labels, key=lambda x: (x.answered_at, x.feedback_id or 0)):
        c = lab.category
        if c is not None:
            out[lab.annotator_id][lab.query_id] = c
    return dict(out)


@dataclass(frozen=True)
class Kappa:
    """A kappa with what it was computed from; ``kappa`` is None when undefined (no shared items, or
    every rating in one category so chance agreement is 1)."""

    kappa: float | None
    n: int
    observed: float | None
    expected: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"kappa": self.kappa, "n": self.n, "observed": self.observed, "expected": self.expected}


def cohen_kappa(a: Mapping[str, float], b: Mapping[str, float]) -> Kappa:
    """Cohen's kappa of two annotators over the queries both answered: (p_o - p_e) / (1 - p_e)."""
    shared = sorted(set(a) & set(b))
    n = len(shared)
    if n == 0:
        return Kappa(None, 0, None, None)
    po = sum(a[q] == b[q] for q in shared) / n
    ca, cb = Counter(a[q] for q in shared), Counter(b[q] for q in shared)
    pe = sum(ca[c] * cb[c] for c in ca) / (n * n)
    return Kappa(None if pe >= 1.0 else (po - pe) / (1.0 - pe), n, po, pe)


def fleiss_kappa(ratings: Mapping[str, Sequence[float]]) -> Kappa:
    """Fleiss' kappa over items rated by at least two annotators.

    Items may have different numbers of raters: each item's agreement is the share of agreeing rater
    pairs, averaged over items; chance agreement uses the pooled category shares. With the same
    number of raters everywhere this is the textbook formula.
    """
    items = [list(r) for r in ratings.values() if len(r) >= 2]
    if not items:
        return Kappa(None, 0, None, None)
    total: Counter[float] = Counter()
    p_items = []
    for r in items:
        c = Counter(r)
        total.update(c)
        m = len(r)
        p_items.append((sum(v * v for v in c.values()) - m) / (m * (m - 1)))
    n_ratings = sum(total.values())
    pbar = sum(p_items) / len(items)
    pe = sum((v / n_ratings) ** 2 for v in total.values())
    return Kappa(None if pe >= 1.0 else (pbar - pe) / (1.0 - pe), len(items), pbar, pe)


def fleiss_from_counts(counts: Sequence[Sequence[int]]) -> Kappa:
    """Fleiss' kappa from an items x categories table of rater counts (the textbook layout)."""
    ratings = {str(i): [float(j) for j, c in enumerate(row) for _ in range(int(c))] for i, row in enumerate(counts)}
    return fleiss_kappa(ratings)


def consensus(by_annotator: Mapping[str, Mapping[str, float]], exclude: str | None = None,
              min_votes: int = 2) -> dict[str, float]:
    """Majority answer (1 or 0) per query among the annotators other than ``exclude``.

    Only decisive answers vote; a query needs ``min_votes`` of them and a strict majority, so a tie
    gives no consensus. Leaving the person out keeps their own answer from agreeing with itself.
    """
    votes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for aid, labels in by_annotator.items():
        if aid == exclude:
            continue
        for q, c in labels.items():
            if c != 0.5:
                votes[q][int(c)] += 1
    return {q: float(v[1] > v[0]) for q, v in votes.items() if v[0] + v[1] >= min_votes and v[0] != v[1]}


def agreement(labels: Mapping[str, float], reference: Mapping[str, float]) -> tuple[int, int]:
    """(agreeing, compared) over queries where both the person and the reference are decisive."""
    shared = [q for q in labels if q in reference and labels[q] != 0.5 and reference[q] != 0.5]
    return sum(labels[q] == reference[q] for q in shared), len(shared)


def reward_model_reference(store: FeedbackStore, query_ids: Iterable[str], reward_fn: RewardFn) -> dict[str, float]:
    """The reward model's answer (1 left, 0 right) for each pair query; near-ties (|p - 0.5| < 1e-6) left out."""
    out = {}
    for qid in sorted(set(query_ids)):
        q = store.query(qid)
        if isinstance(q, PairQuery):
            p = float(reward_fn(q))
            if abs(p - 0.5) >= 1e-6:
                out[qid] = float(p > 0.5)
    return out


def distribution(labels: Iterable[Label]) -> dict[str, int]:
    """Counts by answer: left/right/tie for pairs, good/bad for steps, skipped, demo, other values."""
    names = {("pair", 1.0): "left", ("pair", 0.0): "right", ("pair", 0.5): "tie",
             ("step", 1.0): "good", ("step", 0.0): "bad"}
    out: Counter[str] = Counter()
    for lab in labels:
        if lab.kind == "demo":
            out["demo"] += 1
        elif lab.value is None:
            out["skipped"] += 1
        else:
            out[names.get((lab.kind, lab.value), f"{lab.kind}={lab.value:g}")] += 1
    return dict(sorted(out.items()))


def by_hour(labels: Iterable[Label]) -> dict[str, int]:
    """Labels per UTC hour (``YYYY-MM-DDTHH:00Z`` -> count)."""
    out: Counter[str] = Counter(time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(lab.answered_at)) for lab in labels)
    return dict(sorted(out.items()))


def labels_per_hour(labels: Sequence[Label]) -> float | None:
    """Answering speed: labels divided by the time from first to last answer (at least one minute)."""
    if not labels:
        return None
    ts = [lab.answered_at for lab in labels]
    return len(labels) / (max(max(ts) - min(ts), 60.0) / 3600.0)
