"""Kappas and the exact tests against hand-computed and textbook values."""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_gym.governance.agreement import (
    cohen_kappa,
    consensus,
    fleiss_from_counts,
    fleiss_kappa,
    latest_categories,
    load_labels,
)
from rlhf_gym.governance.report import annotator_report
from rlhf_gym.governance.stats import binom_cdf, binom_sf, binom_two_sided, fisher_exact
from rlhf_gym.types import Feedback, StepQuery


def test_cohen_kappa_matches_hand_computation():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15.
    # p_o = 35/50 = 0.7; A says yes 25/50, B 30/50; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2/0.5 = 0.4.
    pairs = [(1, 1)] * 20 + [(1, 0)] * 5 + [(0, 1)] * 10 + [(0, 0)] * 15
    a = {f"q{i}": float(x) for i, (x, _) in enumerate(pairs)}
    b = {f"q{i}": float(y) for i, (_, y) in enumerate(pairs)}
    k = cohen_kappa(a, b)
    assert k.n == 50 and k.observed == pytest.approx(0.7) and k.expected == pytest.approx(0.5)
    assert k.kappa == pytest.approx(0.4)
    assert cohen_kappa(a, {}).kappa is None
    assert cohen_kappa({"q": 1.0}, {"q": 1.0}).kappa is None  # one category only: undefined, not 1


def test_fleiss_kappa_matches_hand_and_textbook_examples():
    # 3 items x 3 raters: (1,1,1), (1,1,0), (0,0,0). P_i = 1, 1/3, 1 -> P = 7/9;
    # shares 5/9 and 4/9 -> P_e = 41/81; kappa = (63/81 - 41/81) / (40/81) = 0.55.
    k = fleiss_kappa({"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 0.0], "c": [0.0, 0.0, 0.0]})
    assert k.kappa == pytest.approx(0.55) and k.observed == pytest.approx(7 / 9)
    # Fleiss (1971)-style worked example: 10 subjects, 14 raters, 5 categories -> kappa 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    k = fleiss_from_counts(table)
    assert k.kappa == pytest.approx(0.2099, abs=5e-4) and k.observed == pytest.approx(0.378, abs=1e-3)
    # Two raters: Fleiss' pooled chance term differs from Cohen's, but perfect agreement is 1 for both.
    assert fleiss_kappa({"a": [1.0, 1.0], "b": [0.0, 0.0]}).kappa == pytest.approx(1.0)


def test_exact_tests_match_known_values():
    assert binom_sf(8, 10, 0.5) == pytest.approx(56 / 1024)
    assert binom_cdf(2, 10, 0.5) == pytest.approx(56 / 1024)
    assert binom_two_sided(2, 10, 0.5) == pytest.approx(112 / 1024)
    assert binom_two_sided(5, 10, 0.5) == pytest.approx(1.0)
    assert fisher_exact(3, 1, 1, 3) == pytest.approx(0.4857, abs=1e-4)  # Fisher's tea-tasting table
    assert fisher_exact(10, 0, 0, 10) == pytest.approx(2 / 184756)


def test_consensus_leaves_the_person_out_and_needs_a_strict_majority():
    cats = {"a": {"q1": 1.0, "q2": 1.0}, "b": {"q1": 1.0, "q2": 0.0}, "c": {"q1": 0.0, "q2": 0.0}}
    assert consensus(cats) == {"q1": 1.0, "q2": 0.0}
    assert consensus(cats, exclude="a") == {"q2": 0.0}  # q1: one vote each -> no consensus


def test_report_kappa_from_the_store(store):
    # A: 1,1,0,0; B: 1,0,0,0 -> p_o = 3/4, p_e = 0.5*0.25 + 0.5*0.75 = 0.5, kappa = 0.5.
    qs = [StepQuery.make(np.zeros(2), 0, step=i, episode=0) for i in range(4)]
    store.add_queries(qs)
    for name, vals in (("A", [1, 1, 0, 0]), ("B", [1, 0, 0, 0])):
        store.add_annotator(name)
        for q, v in zip(qs, vals, strict=True):
            store.add_feedback(Feedback(q.id, name, float(v), 0.0, 1.0))
    store.add_feedback(Feedback(qs[3].id, "B", None, 0.0, 2.0))  # a later skip does not replace an answer
    assert latest_categories(load_labels(store))["B"][qs[3].id] == 0.0
    rep = annotator_report(store)
    (c,) = rep["agreement"]["cohen"]
    assert (c["a"], c["b"], c["n"]) == ("A", "B", 4) and c["kappa"] == pytest.approx(0.5)
    assert rep["totals"]["distribution"] == {"bad": 5, "good": 3, "skipped": 1}
    assert rep["agreement"]["fleiss"]["n"] == 4
