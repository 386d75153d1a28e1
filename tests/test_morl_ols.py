"""Optimistic linear support: corner weights, the optimistic improvement, and the loop with a perfect
solver on deep-sea-treasure's true front (no RL, so these are exact and fast)."""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_gym.morl.ols import corner_weights, max_improvement, next_weight
from rlhf_gym.morl.policies import hypervolume_2d, weight_grid

#: deep-sea-treasure-v0's true Pareto front (treasure, time), MO-Gymnasium's pareto_front(gamma=1)
DST_FRONT = np.array([[0.7, -1], [8.2, -3], [11.5, -5], [14.0, -7], [15.1, -8], [16.1, -9], [19.6, -13],
                      [20.3, -14], [22.4, -17], [23.7, -19]])


def test_corner_and_improvement_by_hand():
    vals = np.array([[1.0, 0.0], [0.0, 1.0]])
    # lines a and 1 - a cross at a = 0.5
    assert corner_weights(vals).tolist() == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    # trained at both ends: any v has v0 <= 1, v1 <= 1, so at (0.5, 0.5) the front can reach 1; the set has 0.5
    assert max_improvement(np.array([0.5, 0.5]), vals, np.eye(2), np.ones(2)) == pytest.approx(0.5)
    assert max_improvement(np.array([0.5, 0.5]), vals, np.eye(2)[:1], np.ones(1)) == float("inf")
    # a set already at the ideal point: nothing to improve, OLS stops
    assert next_weight(np.array([[1.0, 1.0]]), list(np.eye(2)))[0] is None


def test_simplex_corners_first_for_any_number_of_objectives():
    vals = np.zeros((1, 3))
    assert next_weight(vals, [])[0].tolist() == [1.0, 0.0, 0.0]
    assert next_weight(vals, [np.eye(3)[0], np.eye(3)[1]])[0].tolist() == [0.0, 0.0, 1.0]
    w, gain = next_weight(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), list(np.eye(3)))
    assert w is not None and gain > 0 and np.isclose(w.sum(), 1) and (w > 0).all()  # an inner corner


def test_ols_with_a_perfect_solver_finds_the_convex_hull_where_the_sweep_does_not():
    def solve(w):
        return DST_FRONT[np.argmax(DST_FRONT @ w)]

    found, trained = [], []
    for _ in range(11):
        w, _gain = next_weight(np.array(found) if found else np.zeros((1, 2)), trained)
        if w is None:
            break
        found.append(solve(w))
        trained.append(w)
    hull = {0, 1, 2, 3, 4, 5, 6, 8, 9}  # (20.3, -14) lies on a segment of the hull, optimal for one weight only
    assert {int(np.flatnonzero((f == DST_FRONT).all(1))[0]) for f in found} == hull
    ols = hypervolume_2d(np.array(found), (0, -25)) / 401.8
    sweep = hypervolume_2d(np.array([solve(w) for w in weight_grid(2, 11)]), (0, -25)) / 401.8
    assert ols > 0.99 and sweep < 0.95
