"""Several annotators' trade-offs: per-person weights in ``report annotators``, disagreement flags and
the aggregation rules, on a simulated population with known hidden weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlhf_gym.cli import main
from rlhf_gym.feedback.teachers_tradeoff import PopulationSource, SimulatedTradeoffTeacher
from rlhf_gym.governance.bias import BiasSettings
from rlhf_gym.governance.report import annotator_report, format_report, tradeoff_report
from rlhf_gym.learners.tradeoff import learn_weights
from rlhf_gym.morl.annotators import (
    DisagreementSettings,
    aggregate_weights,
    compare_annotators,
    parse_aggregate,
)
from rlhf_gym.morl.weights import WeightPosterior, cosine, outcome_scale
from rlhf_gym.store import FeedbackStore

# two groups: "gold first" and "fuel first"; within a group the weights are (nearly) the same
HIDDEN = {"gold-1": [0.7, 0.2, 0.1], "gold-2": [0.7, 0.2, 0.1],
          "fuel-1": [0.1, 0.2, 0.7], "fuel-2": [0.15, 0.15, 0.7]}
GROUPS = [["fuel-1", "fuel-2"], ["gold-1", "gold-2"]]
NAMES = ("gold", "time", "fuel")


def _populate(path, budget: int = 80, beta: float | None = None) -> tuple[FeedbackStore, str]:
    store = FeedbackStore(path)
    rid = store.add_run("run-pop", {"env": "toy", "seed": 0, "extra": {"aggregate": "mean", "n_samples": 1000}})
    members = []
    for i, (aid, w) in enumerate(HIDDEN.items()):
        store.add_annotator(aid, kind="simulated")
        members.append(SimulatedTradeoffTeacher(w, np.random.default_rng(i), aid, store, rid, beta=beta))
    outcomes = np.random.default_rng(5).random((40, 3))
    learn_weights(PopulationSource(members, "pop", store, rid), outcomes,
                  lambda: WeightPosterior(3, outcome_scale(outcomes), n_samples=1000, rng=np.random.default_rng(1)),
                  budget, "random", np.random.default_rng(2), NAMES, rid, store)
    return store, rid


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    path = tmp_path_factory.mktemp("tradeoff-pop") / "feedback.db"
    store, rid = _populate(path)
    rep = annotator_report(store, run_id=rid)
    yield store, rid, rep, path
    store.close()


def test_report_separates_annotators_with_different_hidden_weights(population):
    _, rid, rep, _ = population
    [sec] = rep["tradeoff"]
    assert sec["run"] == rid and sec["objectives"] == list(NAMES) and sec["answers"] == 80
    people = {a["id"]: a for a in sec["annotators"]}
    assert set(people) == set(HIDDEN) and all(a["answers"] == 20 for a in people.values())
    pooled = sec["pooled"]["mean"]
    for aid, hidden in HIDDEN.items():
        own = cosine(people[aid]["mean"], hidden)
        other = [w for b, w in HIDDEN.items() if b.split("-")[0] != aid.split("-")[0]][0]
        assert own > 0.95 and own > cosine(people[aid]["mean"], other) + 0.3, (aid, people[aid]["mean"])
        # pooled weights sit between the groups: each person's own posterior recovers them far better
        assert own > cosine(pooled, hidden) + 0.08, (aid, people[aid]["mean"], pooled)
        assert len(people[aid]["sd"]) == 3 and all(0 < s < 0.2 for s in people[aid]["sd"])
    flagged = {frozenset((p["a"], p["b"])) for p in sec["disagreements"]}
    across = {frozenset((a, b)) for a in GROUPS[0] for b in GROUPS[1]}
    assert flagged == across  # every cross-group pair, and no pair within a group
    assert sec["groups"] == GROUPS and sec["ungrouped"] == []
    assert len(sec["pairs"]) == 6
    within = [p for p in sec["pairs"] if frozenset((p["a"], p["b"])) not in across]
    assert all(p["distance"] < 0.05 for p in within)
    assert all(p["distance"] > 0.3 and p["p_beyond"] >= 0.9 for p in sec["disagreements"])
    # the aggregation rules, and the run's own (mean of annotators)
    means = np.array([people[a]["mean"] for a in HIDDEN])
    assert np.allclose(sec["aggregates"]["mean"], means.mean(axis=0))
    assert sec["aggregate_used"]["rule"] == "mean"
    assert np.allclose(sec["aggregate_used"]["weights"], sec["aggregates"]["mean"])
    # the agreement/bias flags (which down-weight people) are not raised by a difference of values
    assert rep["flagged"] == []


def test_report_text_and_json_from_the_cli(population, capsys):
    _, rid, _, path = population
    assert main(["report", "annotators", "--db", str(path), "--run", rid]) == 0
    text = capsys.readouterr().out
    assert "trade-off weights learned per annotator" in text
    for aid in HIDDEN:
        assert aid in text
    assert text.count("FLAG trade-off") == 4
    assert "groups no pair sets apart: {fuel-1, fuel-2}; {gold-1, gold-2}" in text
    assert "rule used by the run: mean:" in text
    assert main(["report", "annotators", "--db", str(path), "--json"]) == 0  # every run: the same one here
    rep = json.loads(capsys.readouterr().out)
    [sec] = rep["tradeoff"]
    assert {a["id"] for a in sec["annotators"]} == set(HIDDEN) and len(sec["disagreements"]) == 4


def test_admin_page_shows_the_tradeoff_section(population):
    from rlhf_gym.governance.admin import render_admin_html

    _, _, rep, _ = population
    page = render_admin_html(rep)
    assert "Trade-off weights per annotator" in page and page.count('<li class="flag">') == 4
    assert all(aid in page for aid in HIDDEN)


def test_thresholds_come_from_the_monitoring_settings(population, tmp_path):
    store, rid, _, path = population
    [sec] = tradeoff_report(store, rid, BiasSettings(tradeoff_distance=0.99))
    assert sec["disagreements"] == [] and sec["groups"] == [sorted(HIDDEN)]
    [sec] = tradeoff_report(store, rid, BiasSettings(tradeoff_min_answers=21))
    assert sec["disagreements"] == [] and sec["groups"] == [] and sorted(sec["ungrouped"]) == sorted(HIDDEN)
    toml = tmp_path / "rlhf-gym.toml"
    toml.write_text("[monitoring]\ntradeoff_distance = 0.99\n")
    assert main(["report", "annotators", "--db", str(path), "--run", rid, "--json", "--policy", str(toml)]) == 0


def test_a_withdrawn_annotator_leaves_the_report(tmp_path):
    store, rid = _populate(tmp_path / "w.db", budget=24)
    store.withdraw_annotator("fuel-2", actor="admin", reason="test")
    [sec] = tradeoff_report(store, rid)
    assert {a["id"] for a in sec["annotators"]} == {"gold-1", "gold-2", "fuel-1"}
    assert sec["answers"] == 18
    store.close()


def test_no_outcome_answers_no_section(tmp_path):
    store = FeedbackStore(tmp_path / "empty.db")
    assert tradeoff_report(store) == [] and annotator_report(store)["tradeoff"] == []
    assert "trade-off" not in format_report(annotator_report(store))
    store.close()


def test_identical_posteriors_are_not_flagged_and_distant_ones_are():
    def post(w, n=25, seed=0):
        p = WeightPosterior(2, 1.0, n_samples=1000, rng=np.random.default_rng(seed))
        rng = np.random.default_rng(seed + 100)
        for _ in range(n):
            a, b = rng.random(2), rng.random(2)
            p.update(a, b, float(np.dot(w, a) > np.dot(w, b)))
        return p

    per = {"x": post([0.8, 0.2]), "y": post([0.8, 0.2], seed=1), "z": post([0.2, 0.8], seed=2), "new": post([0.5, 0.5], n=2)}
    out = compare_annotators(per, DisagreementSettings())
    flagged = {frozenset((p["a"], p["b"])) for p in out["disagreements"]}
    assert flagged == {frozenset("xz"), frozenset("yz")}
    assert out["groups"] == [["x", "y"], ["z"]] and out["ungrouped"] == ["new"]


def test_aggregation_rules():
    pooled = np.array([0.5, 0.5])
    per = {"a": np.array([0.9, 0.1]), "b": np.array([0.3, 0.7]), "c": np.array([0.0, 1.0])}
    assert np.allclose(aggregate_weights("pooled", pooled, per), pooled)
    assert np.allclose(aggregate_weights("per_annotator", pooled, per), pooled)  # the shared policy's
    assert np.allclose(aggregate_weights("mean", pooled, per), [0.4, 0.6])
    assert np.allclose(aggregate_weights("b", pooled, per), [0.3, 0.7])
    assert np.allclose(aggregate_weights("a:3,b:1", pooled, per), [0.75, 0.25])  # c is not named: no say
    assert np.allclose(aggregate_weights("a:1,b:0,c:1", pooled, per), [0.45, 0.55])
    assert np.allclose(aggregate_weights("mean", pooled, {}), pooled)
    assert parse_aggregate("a:3, b:1").shares == {"a": 3.0, "b": 1.0}
    assert "stated rule" in parse_aggregate("a:3,b:1").describe()
    with pytest.raises(ValueError, match="no answers from zed"):
        aggregate_weights("zed", pooled, per)
    with pytest.raises(ValueError, match="no answers from zed"):
        aggregate_weights("a:1,zed:1", pooled, per)
    for bad, msg in (("", "must be pooled"), ("a,b", "a weight, as"), ("a:x", "must be a number"),
                     ("a:-1", ">= 0"), ("a:0,b:0", "positive weight"), ("a:1,a:2", "named twice"),
                     (":1", "id:weight")):
        with pytest.raises(ValueError, match=msg):
            parse_aggregate(bad)


def test_bad_aggregate_rule_is_a_usage_error(tmp_path, capsys):
    rc = main(["train", "--env", "deep-sea-treasure-v0", "--feedback", "tradeoff", "--teacher", "oracle",
               "--budget", "2", "--out", str(tmp_path / "r"), "--set", "aggregate=a:x", "--set", "teacher_weights=0.5,0.5"])
    assert rc == 2 and "must be a number" in capsys.readouterr().err


def test_job_per_annotator_trains_each_persons_policy_and_the_report_reads_the_run(tmp_path, capsys):
    from rlhf_gym.config import TrainConfig
    from rlhf_gym.pipeline import train

    out = tmp_path / "per"
    res = train(TrainConfig(env="deep-sea-treasure-v0", feedback="tradeoff", teacher="population", budget=12,
                            out=str(out), eval_episodes=1, progress=False,
                            extra={"teacher_population": "0.9,0.1;0.1,0.9", "n_policies": 2, "policy_timesteps": 256,
                                   "final_timesteps": 0, "aggregate": "per_annotator", "reference": False}))
    info = json.loads((out / "tradeoff.json").read_text())
    per = info["per_annotator_policies"]
    assert set(per) == {"sim-population-00", "sim-population-01"}
    for aid, p in per.items():
        assert (out / p["path"]).exists() and np.allclose(p["weights"], res["annotator_weights"][aid])
    assert np.allclose(res["learned_weights"], json.loads((out / "posterior.json").read_text())["pooled"]["mean"])
    store = FeedbackStore(out / "feedback.db")
    paths = {m.id: m.path for m in store.models()}
    using = {aid: {paths[m].rsplit("/", 1)[-1] for m in store.models_using(aid)} for aid in per}
    store.close()
    # withdrawing one person flags the pooled policy and their own, not the other person's
    assert using["sim-population-00"] == {"policy.zip", per["sim-population-00"]["path"]}
    assert using["sim-population-01"] == {"policy.zip", per["sim-population-01"]["path"]}
    capsys.readouterr()  # the training log
    assert main(["report", "annotators", "--db", str(out), "--json"]) == 0
    [sec] = json.loads(capsys.readouterr().out)["tradeoff"]
    assert sec["aggregate_used"]["rule"] == "per_annotator"
    assert {a["id"]: a["answers"] for a in sec["annotators"]} == {"sim-population-00": 6, "sim-population-01": 6}
    assert all(np.isclose(sum(a["mean"]), 1.0) and len(a["sd"]) == 2 for a in sec["annotators"])
