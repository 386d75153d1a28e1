"""Several people's trade-offs: each annotator's learned weights, how far apart they are, and the rule
that turns them into the weights a policy is trained for.

A trade-off one group holds and another does not is a bias a governance report should show, not noise
to average away silently. So each person gets their own posterior (from their answers alone), each pair
of people a cosine distance between their posterior means with an interval from posterior draws, and a
pair is flagged as disagreeing when their weights are, with posterior probability at least
``confidence``, further apart than ``threshold`` (enough answers from both required). People no pair
sets apart form groups (connected components), so a report can say "these three hold one trade-off,
those two another".

Aggregation rules (``--set aggregate=...`` of the trade-off job; :func:`parse_aggregate`):

- ``pooled``: all answers in one posterior (the default; a prolific annotator counts for more).
- ``mean``: each annotator's posterior mean, averaged (everyone counts equally).
- ``per_annotator``: no aggregation: each annotator also gets their own policy for their own weights
  (``policy-00.zip``, ``policy-01.zip``, ... in the order annotators first answered; ``tradeoff.json``
  maps each to its annotator); ``policy.zip`` stays the pooled one.
- ``<annotator id>``: that one person's weights (e.g. the task owner's).
- a stated rule ``alice:2,bob:1``: the annotators' posterior means weighted as stated (normalised);
  annotators not named do not count.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlhf_gym.morl.weights import WeightPosterior, cosine

AGGREGATES = ("pooled", "mean", "per_annotator")
"""Named aggregation rules; an annotator id or a stated rule ``id:weight,...`` are also accepted."""


@dataclass(frozen=True)
class AggregateRule:
    """A parsed ``aggregate`` setting.

    ``kind`` is ``pooled``, ``mean``, ``per_annotator``, ``one`` (one annotator's weights) or ``stated``
    (a weighted mean of named annotators' weights); ``shares`` holds the named annotators and weights.
    """

    kind: str
    shares: dict[str, float] = field(default_factory=dict)
    text: str = ""

    def describe(self) -> str:
        """A sentence saying what the rule does, for reports."""
        if self.kind == "pooled":
            return "pooled: all answers in one posterior"
        if self.kind == "mean":
            return "mean: each annotator's weights averaged, everyone counting equally"
        if self.kind == "per_annotator":
            return "per_annotator: a policy for each annotator's own weights (policy.zip is the pooled one)"
        if self.kind == "one":
            return f"one annotator: the weights of {next(iter(self.shares))}"
        return "stated rule: " + ", ".join(f"{a} x{w:g}" for a, w in self.shares.items()) + " (others do not count)"


def parse_aggregate(value: Any) -> AggregateRule:
    """``pooled`` | ``mean`` | ``per_annotator`` | an annotator id | ``id:weight,id:weight`` -> a rule.

    Raises ValueError naming what is wrong (an empty value, a weight that is not a number >= 0, no
    positive weight, an annotator named twice).
    """
    text = str(value).strip()
    if not text:
        raise ValueError(f"aggregate must be {', '.join(AGGREGATES)}, an annotator id or a stated rule such as "
                         f"alice:2,bob:1; got {value!r}")
    if text in AGGREGATES:
        return AggregateRule(text, {}, text)
    if ":" not in text:
        if "," in text:
            raise ValueError(f"aggregate={text!r}: a stated rule gives each annotator a weight, as alice:2,bob:1")
        return AggregateRule("one", {text: 1.0}, text)
    shares: dict[str, float] = {}
    for part in text.split(","):
        aid, sep, w = part.strip().rpartition(":")
        aid = aid.strip()
        if not part.strip():
            continue
        if not sep or not aid:
            raise ValueError(f"aggregate={text!r}: each part of a stated rule is id:weight, got {part!r}")
        try:
            x = float(w)
        except ValueError as e:
            raise ValueError(f"aggregate={text!r}: the weight of {aid!r} must be a number, got {w!r}") from e
        if not np.isfinite(x) or x < 0:
            raise ValueError(f"aggregate={text!r}: the weight of {aid!r} must be >= 0, got {w!r}")
        if aid in shares:
            raise ValueError(f"aggregate={text!r}: {aid!r} is named twice")
        shares[aid] = x
    if not shares or sum(shares.values()) <= 0:
        raise ValueError(f"aggregate={text!r}: a stated rule needs at least one positive weight")
    return AggregateRule("stated", shares, text)


def aggregate_weights(rule: AggregateRule | str, pooled: np.ndarray, per: Mapping[str, np.ndarray]) -> np.ndarray:
    """The weights a single policy is trained for under ``rule``.

    Args:
        rule: a rule or its text.
        pooled: the pooled posterior's mean (all answers together).
        per: annotator id -> that annotator's posterior mean.

    ``per_annotator`` gives the pooled weights here (the shared policy); the per-person weights are ``per``.
    With no per-annotator posteriors (nobody answered) every rule gives the pooled weights.
    """
    r = parse_aggregate(rule) if isinstance(rule, str) else rule
    pooled = np.asarray(pooled, float)
    if r.kind in ("pooled", "per_annotator") or not per:
        return pooled
    if r.kind == "mean":
        return np.mean([np.asarray(w, float) for w in per.values()], axis=0)
    missing = [a for a, s in r.shares.items() if s > 0 and a not in per]
    if missing:
        raise ValueError(f"aggregate={r.text!r}: no answers from {', '.join(missing)}; annotators who answered: "
                         f"{', '.join(per)}")
    total = sum(s for a, s in r.shares.items() if a in per)
    w = sum(s * np.asarray(per[a], float) for a, s in r.shares.items() if a in per) / total
    return np.asarray(w, float)


@dataclass(frozen=True)
class DisagreementSettings:
    """When two people's trade-offs count as different (see the module docstring)."""

    threshold: float = 0.05
    """Cosine distance (1 - cosine) between two people's weights above which they disagree (0.05 is
    about 18 degrees: (0.5, 0.5) against (0.75, 0.25))."""
    confidence: float = 0.9
    """Posterior probability that the distance exceeds ``threshold`` needed to flag a pair."""
    min_answers: int = 5
    """Answers needed from each of the two before a pair can be flagged."""
    draws: int = 2000
    """Paired posterior draws for the distance's interval and probability."""


def weight_summary(post: WeightPosterior) -> dict[str, Any]:
    """A posterior's mean, per-objective standard deviation and 90% credible interval, as plain lists."""
    s, p = post.samples, post.normalised_weights
    lo, hi = [], []
    for j in range(s.shape[1]):
        order = np.argsort(s[:, j])
        c = np.cumsum(p[order])
        lo.append(float(s[order[min(np.searchsorted(c, 0.05), len(c) - 1)], j]))
        hi.append(float(s[order[min(np.searchsorted(c, 0.95), len(c) - 1)], j]))
    return {"answers": len(post.answers), "mean": post.mean.tolist(),
            "sd": np.sqrt(np.clip(np.diag(post.cov), 0, None)).tolist(), "interval90": [lo, hi], "beta": post.beta}


def _cos_dist_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return 1.0 - (a * b).sum(axis=1) / np.maximum(na * nb, 1e-300)


def compare_annotators(per: Mapping[str, WeightPosterior], settings: DisagreementSettings | None = None,
                       rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Pairwise distances between annotators' weights, the pairs that disagree, and the groups.

    Returns ``{"pairs": [...], "disagreements": [...], "groups": [[ids], ...]}``; each pair has the cosine
    distance between the two posterior means, a 90% interval and ``p_beyond`` (the posterior probability
    that the distance exceeds the threshold, from independent draws of each person's posterior), and
    ``disagree`` (``p_beyond >= confidence`` and both gave ``min_answers``). Groups join people with
    enough answers whom nothing sets apart (connected components of the pairs not flagged), largest
    first; through a chain a group can hold two who disagree, which the pairs show. People with fewer
    than ``min_answers`` answers are listed as ``ungrouped``.
    """
    st = settings or DisagreementSettings()
    rng = rng if rng is not None else np.random.default_rng(0)
    ids = list(per)
    draws = {a: per[a].draw(st.draws, rng) for a in ids}
    pairs, close = [], {a: set() for a in ids}
    enough_of = {a: len(per[a].answers) >= st.min_answers for a in ids}
    for a, b in itertools.combinations(ids, 2):
        d_mean = 1.0 - cosine(per[a].mean, per[b].mean)
        d = _cos_dist_rows(draws[a], draws[b])
        p_beyond = float((d > st.threshold).mean())
        enough = enough_of[a] and enough_of[b]
        disagree = bool(enough and p_beyond >= st.confidence)
        pairs.append({"a": a, "b": b, "distance": round(float(d_mean), 4),
                      "interval90": [round(float(np.quantile(d, 0.05)), 4), round(float(np.quantile(d, 0.95)), 4)],
                      "p_beyond": round(p_beyond, 4), "enough_answers": enough, "disagree": disagree})
        if enough and not disagree:
            close[a].add(b)
            close[b].add(a)
    groups, seen = [], set()
    for a in ids:
        if a in seen or not enough_of[a]:
            continue
        comp, todo = [], [a]
        seen.add(a)
        while todo:
            x = todo.pop()
            comp.append(x)
            for y in sorted(close[x] - seen):
                seen.add(y)
                todo.append(y)
        groups.append(sorted(comp))
    groups.sort(key=lambda g: (-len(g), g))
    return {"pairs": pairs, "disagreements": [p for p in pairs if p["disagree"]], "groups": groups,
            "ungrouped": [a for a in ids if not enough_of[a]]}


def per_annotator_posteriors(answers: Sequence[tuple[Any, Any]],
                             make: Callable[[int], WeightPosterior]) -> dict[str, WeightPosterior]:
    """annotator id -> posterior from their answers alone (``answers``: (OutcomeQuery, Feedback) pairs,
    in order; ``make(i)`` builds the i-th person's prior, so each has its own random stream)."""
    by: dict[str, list[tuple[Any, Any]]] = {}
    for q, fb in answers:
        by.setdefault(fb.annotator_id, []).append((q, fb))
    out: dict[str, WeightPosterior] = {}
    for i, (aid, mine) in enumerate(by.items()):
        post = make(i + 1)
        for q, fb in mine:
            post.update(q.left, q.right, fb.value)
        out[aid] = post
    return out
