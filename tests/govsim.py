"""A simulated annotator population with a known true preference (shared by the governance tests)."""

from __future__ import annotations

import numpy as np

from rlhf_gym.store import FeedbackStore
from rlhf_gym.types import Feedback, PairQuery, Segment

ACCURATE = ("acc1", "acc2", "acc3", "acc4", "acc5")
PLANTED = {"always_left": "same_side", "random": "random_clicking", "leans_left": "position_bias",
           "too_fast": "too_fast"}


def segment(ret: float) -> Segment:
    return Segment(obs=[[0.0]], acts=[0], next_obs=[[0.0]], rews=[ret], absorbing=[False])


def make_pairs(store: FeedbackStore, n: int, rng: np.random.Generator, run_id: str = "r1") -> list[PairQuery]:
    """``n`` pair queries whose true answer is the clip with the higher return (clip order random)."""
    qs = [PairQuery.make(segment(float(rng.normal())), segment(float(rng.normal())), run_id=run_id) for _ in range(n)]
    store.add_queries(qs)
    return qs


def truth(q: PairQuery) -> float:
    return 1.0 if q.left.ret > q.right.ret else 0.0


def answer(name: str, q: PairQuery, rng: np.random.Generator, noise: float) -> tuple[float, float]:
    """(label, response seconds) of one simulated person."""
    t = truth(q)
    correct = t if rng.random() >= noise else 1.0 - t
    rt = float(rng.lognormal(np.log(4.0), 0.4))
    if name == "always_left":
        return 1.0, rt
    if name == "random":
        return float(rng.random() < 0.5), rt
    if name == "leans_left":
        return (1.0 if rng.random() < 0.6 else correct), rt
    if name == "too_fast":
        return correct, float(rng.uniform(0.2, 0.6))
    return correct, rt


def populate(store: FeedbackStore, seed: int, n_queries: int = 60, per_person: int = 50,
             consent: str = "v1") -> dict[str, list[int]]:
    """Every person consents, then labels ``per_person`` random queries; returns their feedback ids."""
    rng = np.random.default_rng(seed)
    store.consent_version = consent
    qs = make_pairs(store, n_queries, rng)
    noise = {a: float(rng.uniform(0.0, 0.1)) for a in ACCURATE}
    ids: dict[str, list[int]] = {}
    for name in (*ACCURATE, *PLANTED):
        store.add_annotator(name, kind="human")
        store.record_consent(name, consent, "purpose and consent text", agreed=True)
        ids[name] = []
        t = 1_700_000_000.0
        for i in rng.choice(n_queries, size=per_person, replace=False):
            q = qs[int(i)]
            value, rt = answer(name, q, rng, noise.get(name, 0.05))
            t += rt + float(rng.uniform(1, 5))
            fb = store.add_feedback(Feedback(q.id, name, value, t - rt, t))
            ids[name].append(int(fb.id))
    return ids
