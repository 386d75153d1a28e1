"""Exact binomial tests (no SciPy needed): the small-sample statistics behind the bias flags.

Exact tests rather than normal approximations because flags must be right at 20-50 labels, where
the approximations are poor.
"""

from __future__ import annotations

import math


def binom_pmf(k: int, n: int, p: float) -> float:
    """P(X = k) for X ~ Binomial(n, p)."""
    if k < 0 or k > n:
        return 0.0
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    logc = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(logc + k * math.log(p) + (n - k) * math.log1p(-p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, sum(binom_pmf(i, n, p) for i in range(k + 1)))


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return min(1.0, sum(binom_pmf(i, n, p) for i in range(k, n + 1)))


def binom_two_sided(k: int, n: int, p: float) -> float:
    """Exact two-sided p-value: total probability of outcomes no more likely than ``k``."""
    if n == 0:
        return 1.0
    pk = binom_pmf(k, n, p)
    return min(1.0, sum(q for i in range(n + 1) if (q := binom_pmf(i, n, p)) <= pk * (1 + 1e-7)))


def hypergeom_pmf(k: int, total: int, successes: int, draws: int) -> float:
    """P(X = k) for k successes in ``draws`` draws without replacement from ``total`` with ``successes``."""
    if k < max(0, draws - (total - successes)) or k > min(draws, successes):
        return 0.0
    return math.exp(_lcomb(successes, k) + _lcomb(total - successes, draws - k) - _lcomb(total, draws))


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact test of the 2x2 table [[a, b], [c, d]] (do the rows' rates differ?)."""
    total, successes, draws = a + b + c + d, a + c, a + b
    if total == 0:
        return 1.0
    pk = hypergeom_pmf(a, total, successes, draws)
    lo, hi = max(0, draws - (total - successes)), min(draws, successes)
    return min(1.0, sum(q for i in range(lo, hi + 1)
                        if (q := hypergeom_pmf(i, total, successes, draws)) <= pk * (1 + 1e-7)))


def _lcomb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
