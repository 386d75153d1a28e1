"""Flags for likely bias or inattention, and the weights a trainer can apply to flagged annotators.

Every flag is an exact binomial test at level ``alpha`` *and* a minimum effect size, and needs a
minimum number of labels, so a careful annotator with a few unlucky answers is not flagged while a
planted always-left, random or position-biased one is caught within about 50 labels.

The reference answer for a query is the owner's gold answer when one is seeded, else the majority of
the *other* annotators (leave-one-out, at least two decisive votes, strict majority).

==========================  ==================================================================
flag                        test
==========================  ==================================================================
``same_side``               >= ``same_side_share`` of decisive answers on one side, and more of
                            that side than the reference gives (one-sided binomial); without a
                            reference, pairs are compared with 0.5 (clip order is randomised)
                            at level ``alpha / 10``
``position_bias``           errors lean to one side: the error rate where the reference says
                            "right" differs from the one where it says "left" (Fisher's exact
                            test) by >= ``position_effect``; without a reference, the left
                            rate is tested against 0.5 at level ``alpha / 10``
``disagrees_with_majority`` agreement with the leave-one-out majority significantly below
                            ``min_agreement`` (one-sided binomial)
``random_clicking``         agreement with the reference significantly below ``min_agreement``
                            and under ``chance_ceiling``, not explained by ``same_side`` or by a
                            ``position_bias`` that is accurate on one side: the answers carry
                            no information
``too_fast``                people only: the median response time is significantly below
                            ``min_response_s`` (sign test); simulated teachers answer instantly
``fails_gold``              failure rate on gold queries significantly above ``gold_max_fail``
                            and at least ``gold_min_fail_share``
==========================  ==================================================================
"""

from __future__ import annotations

import statistics
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_gym.governance.agreement import Label, agreement, consensus, latest_categories
from rlhf_gym.governance.stats import binom_cdf, binom_sf, binom_two_sided, fisher_exact
from rlhf_gym.types import Feedback

FLAG_NAMES = ("same_side", "position_bias", "disagrees_with_majority", "random_clicking", "too_fast", "fails_gold")


@dataclass(frozen=True)
class BiasSettings:
    """Thresholds of the flags (see the module docstring)."""

    alpha: float = 0.01
    min_labels: int = 20
    same_side_share: float = 0.9
    position_effect: float = 0.25
    min_agreement: float = 0.8
    chance_ceiling: float = 0.7
    min_response_s: float = 1.0
    min_timed: int = 10
    gold_min: int = 5
    gold_max_fail: float = 0.1
    gold_min_fail_share: float = 0.3
    tradeoff_distance: float = 0.05
    """Trade-off answers: two annotators disagree when the cosine distance between their learned weights
    exceeds this (see :mod:`rlhf_gym.morl.annotators`) ..."""
    tradeoff_confidence: float = 0.9
    """... with at least this posterior probability ..."""
    tradeoff_min_answers: int = 5
    """... and both gave at least this many answers."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Flag:
    """One reason to look at an annotator's labels."""

    name: str
    detail: str
    p_value: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "detail": self.detail, "p_value": self.p_value, "n": self.n}


def annotator_flags(labels: Sequence[Label], own: Mapping[str, float], reference: Mapping[str, float],
                    majority: Mapping[str, float], gold: Mapping[str, float], human: bool,
                    settings: BiasSettings | None = None) -> list[Flag]:
    """Flags for one annotator.

    Args:
        labels: all their (non-withdrawn) answers, for response times and query kinds.
        own: their latest category per query (1 left/good, 0 right/bad, 0.5 tie).
        reference: gold answer if seeded, else the leave-one-out majority, per query.
        majority: the leave-one-out majority alone (for ``disagrees_with_majority``).
        gold: query id -> gold category, for every seeded attention check.
        human: True for people (response-time flag applies).
        settings: thresholds.
    """
    st = settings or BiasSettings()
    kinds = {lab.query_id: lab.kind for lab in labels}
    flags: list[Flag] = []
    decisive = {q: c for q, c in own.items() if c != 0.5}
    pairs = {q: c for q, c in decisive.items() if kinds.get(q) == "pair"}

    # -- always the same side ------------------------------------------------------------------
    n = len(decisive)
    if n >= st.min_labels:
        ones = sum(c == 1.0 for c in decisive.values())
        side, count = (1.0, ones) if ones >= n - ones else (0.0, n - ones)
        share = count / n
        refd = [reference[q] for q in decisive if q in reference and reference[q] != 0.5]
        level = st.alpha
        if len(refd) >= st.min_labels // 2:
            p_exp, basis = sum(r == side for r in refd) / len(refd), "the reference answers"
        elif len(pairs) == n:
            p_exp, basis, level = 0.5, "0.5 (clip order is randomised)", st.alpha / 10
        else:
            p_exp, basis = None, ""
        if share >= st.same_side_share and p_exp is not None and p_exp < st.same_side_share:
            p = binom_sf(count, n, p_exp)
            if p < level:
                name = _side_name(side, pairs == decisive)
                flags.append(Flag("same_side", f"{share:.0%} of {n} answers are '{name}' where {basis} "
                                               f"give {p_exp:.0%}", p, n))

    # -- left/right position bias ------------------------------------------------------------------
    ref_pairs = {q: c for q, c in pairs.items() if reference.get(q) in (0.0, 1.0)}
    n_left = sum(reference[q] == 1.0 for q in ref_pairs)
    n_right = len(ref_pairs) - n_left
    reliable_side = False  # accurate on one side: low agreement is then explained by the lean
    if len(ref_pairs) >= st.min_labels // 2 and min(n_left, n_right) >= 5:
        to_left = sum(reference[q] == 0.0 and c == 1.0 for q, c in ref_pairs.items())
        to_right = sum(reference[q] == 1.0 and c == 0.0 for q, c in ref_pairs.items())
        e_r, e_l = to_left / n_right, to_right / n_left
        m = to_left + to_right
        if m and abs(e_r - e_l) >= st.position_effect:
            p = fisher_exact(to_left, n_right - to_left, to_right, n_left - to_right)
            if p < st.alpha:
                reliable_side = min(e_r, e_l) <= 1.0 - st.chance_ceiling
                side = "left" if e_r > e_l else "right"
                flags.append(Flag("position_bias", f"leans {side}: says left on {e_r:.0%} of {n_right} pairs "
                                                   f"where the right clip is better, right on {e_l:.0%} of {n_left} "
                                                   "where the left is", p, len(ref_pairs)))
    elif len(pairs) >= st.min_labels:
        k = sum(c == 1.0 for c in pairs.values())
        rate = k / len(pairs)
        p = binom_two_sided(k, len(pairs), 0.5)
        if p < st.alpha / 10 and abs(rate - 0.5) >= st.position_effect / 2:
            flags.append(Flag("position_bias", f"answers left on {rate:.0%} of {len(pairs)} pairs (no reference: "
                                               "compared with 0.5, as clip order is randomised)", p, len(pairs)))

    # -- disagreeing with the majority -------------------------------------------------------------
    k, n = agreement(own, majority)
    if n >= st.min_labels:
        p = binom_cdf(k, n, st.min_agreement)
        if p < st.alpha:
            flags.append(Flag("disagrees_with_majority", f"agrees with the majority of the others on {k / n:.0%} "
                                                         f"of {n} shared queries (expected >= {st.min_agreement:.0%})",
                              p, n))

    # -- random clicking -------------------------------------------------------------------------
    k, n = agreement(own, reference)
    explained = "same_side" in {f.name for f in flags} or reliable_side
    if n >= st.min_labels and not explained and k / n < st.chance_ceiling:
        p = binom_cdf(k, n, st.min_agreement)
        if p < st.alpha:
            flags.append(Flag("random_clicking", f"agrees with the reference on {k / n:.0%} of {n} queries, "
                                                 "no better than a coin flip would", p, n))

    # -- answering too fast -----------------------------------------------------------------------
    timed = [lab.response_s for lab in labels if lab.kind != "demo" and lab.value is not None]
    if human and len(timed) >= st.min_timed:
        fast = sum(t < st.min_response_s for t in timed)
        p = binom_sf(fast, len(timed), 0.5)
        med = statistics.median(timed)
        if med < st.min_response_s and p < st.alpha:
            flags.append(Flag("too_fast", f"median answer time {med:.2f}s over {len(timed)} answers "
                                          f"(minimum {st.min_response_s:g}s)", p, len(timed)))

    # -- failing gold queries ---------------------------------------------------------------------
    answered_gold = [q for q in own if q in gold]
    if len(answered_gold) >= st.gold_min:
        fails = sum(own[q] != gold[q] for q in answered_gold)
        p = binom_sf(fails, len(answered_gold), st.gold_max_fail)
        if fails / len(answered_gold) >= st.gold_min_fail_share and p < st.alpha:
            flags.append(Flag("fails_gold", f"failed {fails} of {len(answered_gold)} attention checks", p,
                              len(answered_gold)))
    return flags


def population_flags(labels: Sequence[Label], gold: Mapping[str, float], humans: Iterable[str],
                     settings: BiasSettings | None = None) -> dict[str, list[Flag]]:
    """Flags for every annotator in ``labels`` (gold: query id -> gold category; humans: ids of people).

    The pure core of the report (no store), so it can be checked on many simulated populations.
    """
    cats = latest_categories(labels)
    humans = set(humans)
    by_ann: dict[str, list[Label]] = {}
    for lab in labels:
        by_ann.setdefault(lab.annotator_id, []).append(lab)
    out = {}
    for aid, mine in by_ann.items():
        majority = consensus(cats, exclude=aid)
        out[aid] = annotator_flags(mine, cats.get(aid, {}), {**majority, **gold}, majority, gold, aid in humans,
                                   settings)
    return out


def _side_name(side: float, all_pairs: bool) -> str:
    if all_pairs:
        return "left" if side == 1.0 else "right"
    return "left/good" if side == 1.0 else "right/bad"


# -- what trainers do with the flags ----------------------------------------------------------------
WEIGHT_MODES = ("off", "downweight", "exclude")


@dataclass(frozen=True)
class WeightPolicy:
    """How training treats flagged annotators (setting ``annotator_weighting``).

    ``off``: every label weight 1. ``downweight``: labels of a flagged annotator weigh
    ``flagged_weight``. ``exclude``: weight 0 (drop them). ``flags`` limits which flags count
    (default: all).
    """

    mode: str = "off"
    flagged_weight: float = 0.25
    flags: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in WEIGHT_MODES:
            raise ValueError(f"annotator weighting must be one of {', '.join(WEIGHT_MODES)}, got {self.mode!r}")
        if not 0.0 <= self.flagged_weight <= 1.0:
            raise ValueError(f"flagged_weight must be in [0, 1], got {self.flagged_weight}")
        unknown = set(self.flags or ()) - set(FLAG_NAMES)
        if unknown:
            raise ValueError(f"unknown flag(s) {', '.join(sorted(unknown))}; known: {', '.join(FLAG_NAMES)}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> WeightPolicy:
        """From learner settings (``--set annotator_weighting=exclude --set flagged_weight=0.2``)."""
        flags = settings.get("weight_flags")
        if isinstance(flags, str):
            flags = tuple(f.strip() for f in flags.split(",") if f.strip())
        return cls(mode=str(settings.get("annotator_weighting", "off")),
                   flagged_weight=float(settings.get("flagged_weight", 0.25)),
                   flags=tuple(flags) if flags else None)

    def weight(self, flags: Iterable[str]) -> float:
        counted = [f for f in flags if self.flags is None or f in self.flags]
        if self.mode == "off" or not counted:
            return 1.0
        return 0.0 if self.mode == "exclude" else self.flagged_weight


def annotator_weights(report: Mapping[str, Any], policy: WeightPolicy) -> dict[str, float]:
    """annotator id -> label weight, from a report made by :func:`~rlhf_gym.governance.report.annotator_report`.

    Annotators missing from the report (e.g. new since it was made) are not in the dict; use
    ``weights.get(id, 1.0)``.
    """
    return {a["id"]: policy.weight(f["name"] for f in a["flags"]) for a in report["annotators"]}


def feedback_weights(feedback: Sequence[Feedback], weights: Mapping[str, float]) -> np.ndarray:
    """One weight per answer (its annotator's; 1.0 when unknown), to multiply into a per-label loss."""
    return np.array([float(weights.get(fb.annotator_id, 1.0)) for fb in feedback], dtype=np.float64)


def load_monitoring(path: str | Path | None = None) -> tuple[BiasSettings, WeightPolicy]:
    """Read ``[monitoring]`` of ``rlhf-gym.toml`` (flag thresholds and the training weighting).

    Keys: any :class:`BiasSettings` field, plus ``annotator_weighting``, ``flagged_weight`` and
    ``weight_flags`` (see :class:`WeightPolicy`). A missing default file gives the defaults.
    """
    p = Path(path) if path else Path("rlhf-gym.toml")
    if not p.exists():
        if path:
            raise FileNotFoundError(f"policy file {p} not found")
        return BiasSettings(), WeightPolicy()
    data = dict(tomllib.loads(p.read_text()).get("monitoring", {}))
    names = {f.name for f in fields(BiasSettings)}
    unknown = set(data) - names - {"annotator_weighting", "flagged_weight", "weight_flags"}
    if unknown:
        raise ValueError(f"{p}: unknown keys in [monitoring]: {', '.join(sorted(unknown))}")
    try:
        settings = BiasSettings(**{k: type(getattr(BiasSettings, k))(v) for k, v in data.items() if k in names})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{p}: bad value in [monitoring]: {e}") from e
    return settings, WeightPolicy.from_settings(data)
