"""Annotator weighting in the evaluative loop: a flagged annotator's answers are dropped or down-weighted.

Two annotators share one run: alice (a simulated teacher) and bob, a person who answers in a blink, so the
annotator report flags him ``too_fast``; bob's answers are also all wrong, so counting them would matter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhf_gym.config import TrainConfig
from rlhf_gym.envs import make_env
from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.feedback.teachers_evaluative import ExpertActionJudge, SimulatedTeacher
from rlhf_gym.governance.bias import WeightPolicy
from rlhf_gym.governance.weighting import AnnotatorWeighting
from rlhf_gym.jobs.evaluative import train_evaluative
from rlhf_gym.learners.common import Batch, FeedbackLearner, History, LearnerSettings
from rlhf_gym.learners.evaluative_loop import TeachStats, make_learner, teach
from rlhf_gym.store import FeedbackStore
from rlhf_gym.types import Feedback, Query, StepQuery

RUN = "r"
FAST = LearnerSettings(warmup_steps=200)


def cartpole_expert(obs: np.ndarray) -> int:
    return int(3 * obs[2] + obs[3] > 0)


def add_people(store: FeedbackStore) -> None:
    """alice is a simulated teacher; bob is a consenting person (so answer times count for him)."""
    store.consent_version = "v1"
    store.add_annotator("alice", kind="simulated")
    store.add_annotator("bob", kind="human")
    store.record_consent("bob", "v1", "purpose and consent text", agreed=True)


class TwoTeachers(FeedbackSource):
    """Questions go to alice and bob in turn; each stores their own answers (bob's instantly and wrong)."""

    def __init__(self, store: FeedbackStore, run_id: str, bob_skips: bool = False) -> None:
        super().__init__("alice+bob", store=None, run_id=run_id)
        add_people(store)
        judge = ExpertActionJudge(cartpole_expert)
        self.people = (SimulatedTeacher(judge, "alice", store, run_id, rng=np.random.default_rng(1)),
                       SimulatedTeacher(judge, "bob", store, run_id, rng=np.random.default_rng(2), noise=1.0,
                                        skip=1.0 if bob_skips else 0.0))
        self.turn = 0

    def post(self, queries: list[Query]) -> None:
        for q in queries:
            self.people[self.turn % 2].post([q])
            self.turn += 1

    def poll(self, step: int | None = None) -> list[Feedback]:
        return [fb for p in self.people for fb in p.poll(step)]

    @property
    def pending(self) -> int:
        return sum(p.pending for p in self.people)

    def _submit(self, queries: list[Query]) -> None:  # post routes each query to one of the two
        raise NotImplementedError

    def _collect(self, step: int | None) -> list[Feedback]:
        return []


def store_with_flagged_bob(tmp_path, name: str = "feedback.db") -> FeedbackStore:
    """A store whose run already holds 12 of bob's answers, each given 0.2 s after it was asked."""
    store = FeedbackStore(tmp_path / name)
    add_people(store)
    qs = [StepQuery.make(np.zeros(4), 1, step=-1, episode=-1, run_id=RUN) for _ in range(12)]
    store.add_queries(qs, run_id=RUN)
    for i, q in enumerate(qs):
        store.add_feedback(Feedback(q.id, "bob", 1.0, 1_700_000_000.0 + 5 * i, 1_700_000_000.2 + 5 * i))
    return store


def run(store: FeedbackStore, weighting: AnnotatorWeighting | None, learner: str = "tamer", budget: int = 30,
        bob_skips: bool = False) -> tuple[FeedbackLearner, TeachStats]:
    agent = make_learner(learner, 4, 2, np.random.default_rng(0), FAST)
    stats = teach(make_env("CartPole-v1", seed=0), agent, TwoTeachers(store, RUN, bob_skips), budget, run_id=RUN,
                  seed=0, weighting=weighting)
    return agent, stats


def answers_in_run(store: FeedbackStore, who: str) -> list[int]:
    """Ids of ``who``'s answers to this run's learner (not the earlier history), oldest first."""
    return [int(f.id) for f in store.feedback(run_id=RUN, annotator_id=who, include_skipped=False)
            if f.step is not None]


def same_weights(a: FeedbackLearner, b: FeedbackLearner) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in sa.items())


def test_exclude_drops_a_flagged_annotator_from_updates_and_lineage(tmp_path):
    """With bob flagged before the learner starts, ``exclude`` trains exactly the net that a run in which
    bob skipped every question trains, and none of bob's answers reaches the lineage."""
    store = store_with_flagged_bob(tmp_path)
    weighting = AnnotatorWeighting(store, WeightPolicy(mode="exclude"), run_id=RUN, every=10)
    agent, stats = run(store, weighting)
    alice, bob = answers_in_run(store, "alice"), answers_in_run(store, "bob")
    assert weighting.weights == {"alice": 1.0, "bob": 0.0} and weighting.refreshes >= 2
    assert len(bob) == stats.excluded == 15 and stats.used == len(alice) == 15
    assert sorted(stats.feedback_ids) == alice  # lineage: alice's answers only
    mid = store.record_model(tmp_path / "policy.safetensors", stats.feedback_ids, kind="policy", run_id=RUN)
    assert not set(store.lineage(mid)) & set(bob)
    assert {r.annotator for r in agent.replay} == {"alice"}  # bob's answers are never replayed...
    assert sum(r.annotator == "bob" and r.annotator_weight == 0.0 for r in agent.records) == 15  # ...only kept aside

    skipping = store_with_flagged_bob(tmp_path, "skips.db")
    ref, ref_stats = run(skipping, None, bob_skips=True)
    assert ref_stats.used == 15 and ref_stats.skipped == 15
    assert same_weights(agent, ref)  # the updates ignored bob entirely
    store.close()
    skipping.close()


def test_an_annotator_flagged_mid_run_leaves_the_replay_but_not_the_past_lineage(tmp_path):
    """bob is flagged once he has 10 answers in the run (weights refreshed every 4 answers); the answers he gave before that trained the net, so
    they stay in its lineage (withdrawing him must still flag the policy), while the replay drops them."""
    store = FeedbackStore(tmp_path / "feedback.db")
    weighting = AnnotatorWeighting(store, WeightPolicy(mode="exclude"), run_id=RUN, every=4)
    agent, stats = run(store, weighting, learner="coach", budget=40)
    bob = answers_in_run(store, "bob")
    used = [i for i in bob if i in stats.feedback_ids]
    dropped = [i for i in bob if i not in stats.feedback_ids]
    assert len(used) >= 9 and stats.excluded == len(dropped) > 0  # the 10th answer can complete the flag
    assert max(used) < min(dropped)  # before the flag counted, after it did not
    assert set(answers_in_run(store, "alice")) <= set(stats.feedback_ids)
    assert {r.annotator for r in agent.replay} == {"alice"}
    store.close()


def test_downweight_keeps_a_flagged_annotator_at_the_smaller_weight(tmp_path):
    store = store_with_flagged_bob(tmp_path)
    weighting = AnnotatorWeighting(store, WeightPolicy(mode="downweight", flagged_weight=0.25), run_id=RUN)
    agent, stats = run(store, weighting, learner="reinforce")
    assert stats.excluded == 0 and sorted(stats.feedback_ids) == sorted(answers_in_run(store, "alice")
                                                                        + answers_in_run(store, "bob"))
    weights = {(r.annotator, r.annotator_weight) for r in agent.replay}
    assert weights == {("alice", 1.0), ("bob", 0.25)}
    store.close()


def conflicting(learner: str, bob_weight: float) -> FeedbackLearner:
    """A learner given two answers about the same step: alice says good, bob says bad."""
    agent = make_learner(learner, 4, 2, np.random.default_rng(0), LearnerSettings(updates_per_answer=1))
    agent.freeze_scaler()
    h = History()
    seen = h.add(0, np.array([0.1, 0.0, -0.05, 0.2], np.float32), 1)
    agent.learn(1.0, seen, 0, h, annotator="alice", weight=1.0)
    agent.learn(0.0, seen, 0, h, annotator="bob", weight=bob_weight)
    return agent


def test_tamer_fits_the_weighted_mean_of_conflicting_answers():
    """Weighted least squares: with bob at 0.25, H(s, a) settles at (1 - 0.25) / 1.25 = 0.6, not at 0."""
    for bob_weight, want in ((0.25, 0.6), (1.0, 0.0), (0.0, 1.0)):
        agent = conflicting("tamer", bob_weight)
        for _ in range(400):
            loss = agent.loss(Batch.of(agent.replay))
            agent.opt.zero_grad()
            loss.backward()
            agent.opt.step()
        got = float(agent.model.outputs(agent.replay[0].steps[0][0])[1])
        assert abs(got - want) < 0.05, (bob_weight, got)


@pytest.mark.parametrize("learner", ["reinforce", "coach"])
def test_policy_learners_scale_a_flagged_answer_after_balancing(learner):
    """bob's "bad" is the minibatch's only one, so good/bad balancing alone would give it half the batch
    whatever his weight; his weight must still scale his part of the loss (0.25 of it at weight 0.25)."""
    agent = conflicting(learner, 1.0)
    parts = {}
    for w in (0.0, 0.25, 1.0):
        agent.reweight({"bob": w})
        parts[w] = agent.loss(Batch.of(agent.records)).item()
    bob_part = parts[1.0] - parts[0.0]
    assert abs(bob_part) > 1e-3
    assert parts[0.25] - parts[0.0] == pytest.approx(0.25 * bob_part, rel=1e-4)


def test_weighting_off_changes_nothing_and_reads_nothing(tmp_path):
    """``off`` on a store where bob is flagged gives the same run as no weighting at all, bob included."""
    store = store_with_flagged_bob(tmp_path)
    weighting = AnnotatorWeighting(store, WeightPolicy(mode="off"), run_id=RUN, every=1)
    agent, stats = run(store, weighting)
    assert weighting.refreshes == 0 and stats.excluded == 0
    assert set(answers_in_run(store, "bob")) <= set(stats.feedback_ids)
    other = store_with_flagged_bob(tmp_path, "other.db")
    ref, ref_stats = run(other, None)
    assert same_weights(agent, ref) and ref_stats.used == stats.used == 30
    store.close()
    other.close()


def test_train_evaluative_applies_the_setting_and_records_the_lineage(tmp_path, monkeypatch):
    from rlhf_gym.feedback import registry

    # a teacher is added by registering it (for this test only)
    monkeypatch.setitem(registry._REGISTRY, ("evaluative", "two-teachers"),
                        registry.TeacherEntry("evaluative", "two-teachers", lambda req: TwoTeachers(req.store, req.run_id)))
    cfg = TrainConfig(env="CartPole-v1", feedback="evaluative", learner="tamer", teacher="two-teachers", budget=40, seed=0,
                      out=str(tmp_path / "run"), progress=False, eval_episodes=2,
                      extra={"annotator_weighting": "exclude", "weight_every": 4, "warmup_steps": 200,
                             "eval_every": 1000})
    res = train_evaluative(cfg)
    store = FeedbackStore(tmp_path / "run" / "feedback.db")
    lineage = set(store.lineage(res["model_id"]))
    bob = [int(f.id) for f in store.feedback(run_id=res["run_id"], annotator_id="bob", include_skipped=False)]
    alice = {int(f.id) for f in store.feedback(run_id=res["run_id"], annotator_id="alice", include_skipped=False)}
    dropped = [i for i in bob if i not in lineage]
    assert alice <= lineage and res["feedback_excluded"] == len(dropped) > 0
    assert max(i for i in bob if i in lineage) < min(dropped)
    store.close()


def test_reweight_moves_answers_out_of_the_replay_and_back():
    """Flags can also go: a re-admitted annotator's answers, kept aside at weight 0, are replayed again."""
    agent = conflicting("tamer", 0.0)
    assert [r.annotator for r in agent.replay] == ["alice"] and len(agent.records) == 2 and agent.answers == 1
    agent.reweight({"bob": 0.5})
    assert [(r.annotator, r.annotator_weight) for r in agent.replay] == [("alice", 1.0), ("bob", 0.5)]
    agent.reweight({"alice": 0.0})
    assert [(r.annotator, r.annotator_weight) for r in agent.replay] == [("bob", 1.0)]
