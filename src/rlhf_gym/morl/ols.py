"""Optimistic linear support (OLS): where on the simplex to train the next policy of a Pareto set.

A weight sweep trains at fixed weights, so a treasure that is optimal only for a narrow range of
weights is found only if a grid point falls in that range. OLS (Roijers, Whiteson and Oliehoek 2015)
places each next weight where the set could still improve the most. The set's value function
``V_S(w) = max_{v in S} w @ v`` is convex and piecewise linear; every weight already trained at
bounds the true one from above (``w_i @ v <= V_S(w_i)`` for any reachable ``v``, trusting the solver
there), so at a weight ``w`` the most the true front can exceed the set by is the linear programme

    max_v  w @ v - V_S(w)   subject to   w_i @ v <= V_S(w_i)  for every weight w_i trained at,

largest at a corner of ``V_S``'s upper surface. OLS starts at the simplex's corners (one objective
each), then repeatedly trains at the corner with the largest such improvement, fine-tuning the set's
best policy for that weight (policies are reused, so each new one starts from a related behaviour),
and stops when no corner can improve by more than a tiny fraction of the values' range.

With two objectives the corners are found exactly (where two lines of the upper surface cross); with
more, the candidates are the simplex's corners, its centre and a fixed sample of weights from a
uniform Dirichlet (an approximation: the exact vertex enumeration grows quickly with the objectives).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: candidate weights drawn for more than two objectives (corners of V_S are approximated by these).
N_CANDIDATES = 400


def set_value(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``V_S(w) = max_v w @ v`` for each row of ``w`` (weights), over the rows of ``values``."""
    return (np.atleast_2d(w) @ np.asarray(values, float).T).max(axis=1)


def corner_weights(values: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Candidate weights on the simplex at the corners of ``V_S``'s upper surface (rows of weights).

    Two objectives: the simplex's two ends and every crossing of two value lines that lies on the upper
    surface. More: the simplex's corners, its centre and :data:`N_CANDIDATES` uniform Dirichlet draws.
    """
    vals = np.unique(np.asarray(values, float).round(9), axis=0)
    k = vals.shape[1]
    if k != 2:
        rng = rng if rng is not None else np.random.default_rng(0)
        return np.vstack([np.eye(k), np.full((1, k), 1.0 / k), rng.dirichlet(np.ones(k), N_CANDIDATES)])
    # w = (a, 1 - a): each value v is the line v[1] + a (v[0] - v[1]); corners are where the top one changes
    out = [0.0, 1.0]
    slope, icpt = vals[:, 0] - vals[:, 1], vals[:, 1]
    span = float(np.abs(vals).max()) or 1.0
    for i in range(len(vals)):
        for j in range(i + 1, len(vals)):
            if abs(slope[i] - slope[j]) < 1e-12:
                continue
            a = (icpt[j] - icpt[i]) / (slope[i] - slope[j])
            if 0.0 < a < 1.0:
                top = float((icpt + a * slope).max())
                if icpt[i] + a * slope[i] >= top - 1e-9 * span:
                    out.append(float(a))
    a = np.unique(np.round(out, 12))
    return np.stack([a, 1 - a], axis=1)


def max_improvement(w: np.ndarray, values: np.ndarray, trained: np.ndarray, bounds: np.ndarray) -> float:
    """The most the true front can exceed the set at ``w``, given the weights already trained at.

    Solves ``max_v w @ v  s.t.  trained @ v <= bounds`` (bounded once every simplex corner is trained)
    and subtracts ``V_S(w)``; ``inf`` when the programme is unbounded (a corner of the simplex not
    trained yet).
    """
    from scipy.optimize import linprog

    w = np.asarray(w, float)
    res = linprog(-w, A_ub=np.asarray(trained, float), b_ub=np.asarray(bounds, float),
                  bounds=[(None, None)] * len(w), method="highs")
    if res.status == 3:  # unbounded
        return float("inf")
    if res.status != 0:
        return 0.0
    return float(-res.fun - set_value(values, w)[0])


def next_weight(values: np.ndarray, trained: Sequence[np.ndarray], rng: np.random.Generator | None = None,
                tol: float = 1e-4) -> tuple[np.ndarray | None, float]:
    """The corner weight with the largest possible improvement, and that improvement.

    ``trained``: the weights trained at so far. Simplex corners not trained yet come first (the OLS
    start). Returns ``(None, improvement)`` when no candidate can improve by more than ``tol`` times the
    values' range (the set covers its convex hull as far as the solver can tell).
    """
    vals = np.asarray(values, float)
    k = vals.shape[1]
    done = np.asarray(trained, float).reshape(-1, k)
    for i in range(k):
        e = np.eye(k)[i]
        if not any(np.allclose(e, t) for t in done):
            return e, float("inf")
    bounds = set_value(vals, done)
    best_w, best = None, -np.inf
    for w in corner_weights(vals, rng):
        if any(np.allclose(w, t, atol=1e-9) for t in done):
            continue
        d = max_improvement(w, vals, done, bounds)
        if d > best:
            best_w, best = w, d
    span = float(np.ptp(vals, axis=0).max()) if len(vals) > 1 else float(np.abs(vals).max())
    if best_w is None or best <= tol * max(span, 1e-9):
        return None, max(best, 0.0)
    return best_w, best
