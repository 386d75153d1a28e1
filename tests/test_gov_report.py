"""The agreement and bias report on a simulated population with a known true preference."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from govsim import ACCURATE, PLANTED, answer, populate, segment, truth
from rlhf_gym.cli import main
from rlhf_gym.governance.agreement import Label
from rlhf_gym.governance.bias import (
    BiasSettings,
    WeightPolicy,
    annotator_weights,
    feedback_weights,
    population_flags,
)
from rlhf_gym.governance.report import annotator_report, format_report, training_weights
from rlhf_gym.store import FeedbackStore
from rlhf_gym.types import PairQuery


def true_reward_fn(q: PairQuery) -> float:
    """A stand-in reward model: Bradley-Terry on the true returns."""
    return 1.0 / (1.0 + math.exp(-(q.left.ret - q.right.ret)))


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    store = FeedbackStore(tmp_path_factory.mktemp("pop") / "feedback.db")
    ids = populate(store, seed=0)
    # The owner seeds 20 attention checks with their known answer.
    for q in store.queries(kind="pair")[:20]:
        assert isinstance(q, PairQuery)
        store.set_gold(q.id, truth(q))
    rep = annotator_report(store, reward_fn=true_reward_fn)
    yield store, ids, rep
    store.close()


def _by_id(rep):
    return {a["id"]: a for a in rep["annotators"]}


def test_planted_annotators_are_flagged_within_50_labels_and_accurate_ones_are_not(population):
    _, ids, rep = population
    people = _by_id(rep)
    for name, flag in PLANTED.items():
        assert len(ids[name]) == 50 and people[name]["labels"] == 50
        names = {f["name"] for f in people[name]["flags"]}
        assert flag in names, (name, people[name]["flags"])
    for name in ACCURATE:
        assert people[name]["flags"] == [], (name, people[name]["flags"])
        assert people[name]["agreement_majority"]["rate"] > 0.8
        assert people[name]["agreement_reward_model"]["rate"] > 0.8
    assert set(rep["flagged"]) == set(PLANTED)
    # the always-left person fails the attention checks; careful people do not
    assert "fails_gold" in {f["name"] for f in people["always_left"]["flags"]}
    assert all(people[n]["gold"]["n"] >= 10 for n in people)
    assert people["always_left"]["agreement_reward_model"]["rate"] < 0.7


def test_report_contents_are_json_and_consistent(population):
    store, _, rep = population
    assert json.loads(json.dumps(rep)) == rep  # plain JSON types only (no NaN, numpy, rows)
    people = _by_id(rep)
    assert rep["totals"]["labels"] == 50 * len(people)
    assert sum(rep["totals"]["distribution"].values()) == rep["totals"]["labels"]
    for a in people.values():
        assert sum(a["by_hour"].values()) == a["labels"] and a["labels_per_hour"] > 0
        assert a["consent"]["agreed"] and a["consent"]["version"] == "v1"
    assert people["always_left"]["distribution"] == {"left": 50}
    assert people["too_fast"]["median_response_s"] < 1.0 < people["acc1"]["median_response_s"]
    fleiss = rep["agreement"]["fleiss"]
    assert fleiss["n"] == 60 and 0.2 < fleiss["kappa"] < 0.9
    kappas = {(c["a"], c["b"]): c["kappa"] for c in rep["agreement"]["cohen"]}
    assert kappas[("acc1", "acc2")] > 0.6 and abs(kappas[("acc1", "random")]) < 0.4
    assert rep["audit"]["ok"] and rep["totals"]["gold_queries"] == 20
    text = format_report(rep)
    assert "FLAG always_left: same_side" in text and "Fleiss' kappa" in text


def test_weights_for_training(population):
    store, _, rep = population
    assert set(annotator_weights(rep, WeightPolicy("exclude")).items()) == (
        {(n, 0.0) for n in PLANTED} | {(n, 1.0) for n in ACCURATE})
    w = annotator_weights(rep, WeightPolicy("downweight", flagged_weight=0.5, flags=("too_fast",)))
    assert w["too_fast"] == 0.5 and w["always_left"] == 1.0 and w["acc1"] == 1.0
    assert training_weights(store, WeightPolicy("off")) == {}
    fbs = store.feedback(annotator_id="random")[:3] + store.feedback(annotator_id="acc1")[:2]
    assert feedback_weights(fbs, annotator_weights(rep, WeightPolicy("exclude"))).tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="annotator weighting"):
        WeightPolicy("sometimes")
    with pytest.raises(ValueError, match="unknown flag"):
        WeightPolicy("exclude", flags=("lazy",))


def test_report_cli_text_and_json(population, capsys):
    store, _, _ = population
    db = store.url.removeprefix("sqlite:///")
    assert main(["report", "annotators", "--db", db, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep["flagged"]) == set(PLANTED)
    assert main(["report", "annotators", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "always_left" in out and "same_side" in out
    assert main(["annotators", "list", "--db", db, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"]: r["labels"] for r in rows}["acc1"] == 50 and not any(r["has_contact"] for r in rows)


def _simulated_labels(seed: int, per_person: int = 50, n_queries: int = 60) -> list[Label]:
    rng = np.random.default_rng(seed)
    qs = [PairQuery.make(segment(float(rng.normal())), segment(float(rng.normal()))) for _ in range(n_queries)]
    noise = {a: float(rng.uniform(0.0, 0.1)) for a in ACCURATE}
    labels = []
    for name in (*ACCURATE, *PLANTED):
        t = 0.0
        for i in rng.choice(n_queries, size=per_person, replace=False):
            q = qs[int(i)]
            v, rt = answer(name, q, rng, noise.get(name, 0.05))
            t += rt + 1.0
            labels.append(Label(None, q.id, name, "pair", v, t - rt, t, rt))
    return labels


def test_flags_are_robust_over_seeds():
    """40 populations: no false flag on any accurate person; each planted kind caught in >= 95% of them."""
    caught: Counter[str] = Counter()
    seeds = range(100, 140)
    for seed in seeds:
        flags = population_flags(_simulated_labels(seed), {}, [*ACCURATE, *PLANTED])
        for name in ACCURATE:
            assert flags[name] == [], (seed, name, flags[name])
        for name, flag in PLANTED.items():
            caught[name] += flag in {f.name for f in flags[name]}
    for name in PLANTED:
        assert caught[name] >= 0.95 * len(seeds), (name, caught[name])


def test_no_flags_on_small_samples():
    """With 10 labels each there is too little evidence: nobody is flagged, planted or not, except
    the response-time check (10 timed answers are enough to see a median of 0.4 s)."""
    flags = population_flags(_simulated_labels(7, per_person=10), {}, [*ACCURATE, *PLANTED])
    assert {n for n, f in flags.items() if f} <= {"too_fast"}
    assert all(f == [] for n, f in flags.items() if n in ACCURATE)


def test_without_any_reference_position_bias_uses_the_randomised_clip_order():
    """A single person (no majority, no gold): always-left is still caught against 0.5."""
    labels = [lab for lab in _simulated_labels(3) if lab.annotator_id in ("always_left", "acc1")]
    only_left = [lab for lab in labels if lab.annotator_id == "always_left"]
    only_acc = [lab for lab in labels if lab.annotator_id == "acc1"]
    assert {f.name for f in population_flags(only_left, {}, ["always_left"])["always_left"]} >= {
        "same_side", "position_bias"}
    assert population_flags(only_acc, {}, ["acc1"])["acc1"] == []
    assert BiasSettings().alpha == 0.01


def test_owner_config_example_parses_to_the_defaults(tmp_path):
    from pathlib import Path

    from rlhf_gym.governance.bias import load_monitoring
    from rlhf_gym.governance.consent import FeedbackPolicy, load_policy

    example = Path(__file__).resolve().parents[1] / "rlhf-gym.toml.example"
    assert load_policy(example) == FeedbackPolicy()
    assert load_monitoring(example) == (BiasSettings(), WeightPolicy())
    custom = tmp_path / "rlhf-gym.toml"
    custom.write_text('[monitoring]\nannotator_weighting = "exclude"\nweight_flags = ["too_fast"]\nalpha = 0.05\n')
    settings, weighting = load_monitoring(custom)
    assert settings.alpha == 0.05 and weighting == WeightPolicy("exclude", flags=("too_fast",))
    custom.write_text("[monitoring]\nalpah = 0.05\n")
    with pytest.raises(ValueError, match="alpah"):
        load_monitoring(custom)
    assert WeightPolicy.from_settings({"annotator_weighting": "downweight", "flagged_weight": "0.1",
                                       "weight_flags": "same_side,too_fast"}) == WeightPolicy(
        "downweight", 0.1, ("same_side", "too_fast"))


def test_admin_page_shows_flags_and_escapes_ids(population, tmp_path):
    from rlhf_gym.governance.admin import render_admin_html

    _, _, rep = population
    page = render_admin_html(rep)
    assert page.count('class="flag"') == sum(len(a["flags"]) for a in rep["annotators"])
    assert "same_side" in page and "intact" in page
    store = FeedbackStore(tmp_path / "x.db")
    store.add_annotator("<script>alert(1)</script>")
    page = render_admin_html(annotator_report(store))
    assert "<script>" not in page and "&lt;script&gt;" in page
