"""A Bayesian model of a person's trade-off weights, learned from which of two outcomes they prefer.

Model (Bradley-Terry on scalarised returns): the person has weights ``w`` on the simplex (non-negative,
summing to 1) over the objectives and prefers outcome ``a`` (a vector of per-objective returns) to
``b`` with probability ``sigmoid(beta * v @ ((a - b) / scale))``, where ``scale`` holds each objective's
spread over the outcomes being compared (fixed when the model is made) and ``v`` are the weights on those
range-normalised objectives. So ``beta`` means the same on every task, and an objective measured in small
numbers (ore in tonnes beside fuel in litres) is not drowned by a large one. The weights reported are on
the raw returns, ``w ∝ v / scale`` (the same preferences: ``w @ (a - b)`` has the sign of ``v @ ((a - b) / scale)``),
which is what ``teacher_weights`` and ``utility = w @ returns`` mean. The prior is a Dirichlet on ``v``.
A tie is the label 0.5 (half of each side's likelihood); a skipped question carries nothing.

The posterior is held as weighted samples (sequential Monte Carlo): particles drawn from the Dirichlet
prior, reweighted by each answer's likelihood, and, when the effective sample size falls below half,
resampled and moved by Metropolis steps on the simplex (the target is the full posterior of all answers
so far, so nothing is lost by resampling). That gives a mean, a covariance and samples, not a point.

Questions: :func:`select_pair` picks, among candidate pairs, the one with the largest expected
information gain about ``w`` (the mutual information between the answer and the weights, as in active
preference-based reward learning), or the largest expected volume removal (the expected posterior mass
an answer rules out), or a uniformly random pair (the baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SELECTIONS = ("info", "volume", "random")


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -z)


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


@dataclass(frozen=True)
class Answer:
    """One comparison as the model sees it: outcome vectors and the label (1 = ``a`` better, 0 = ``b``)."""

    a: np.ndarray
    b: np.ndarray
    label: float


class WeightPosterior:
    """Posterior over trade-off weights from pairwise answers, by weighted samples.

    Args:
        n_objectives: number of objectives (length of each outcome vector).
        scale: each objective's spread (or one number for all); use :func:`outcome_scale`.
        beta: rationality assumed of the person (larger: answers follow the utility more closely);
            None learns it with the weights (log-uniform prior on ``beta_range``), so a noisy person's
            answers widen the posterior instead of pulling it off course.
        beta_range: prior range of a learned ``beta``.
        n_samples: particles.
        prior_alpha: Dirichlet concentration of the prior (1 = uniform on the simplex).
        rng: random stream (prior draws, resampling and moves).
        mcmc_steps: Metropolis steps per rejuvenation.
    """

    def __init__(self, n_objectives: int, scale: Any = 1.0, beta: float | None = 20.0, n_samples: int = 4000,
                 prior_alpha: float = 1.0, rng: np.random.Generator | None = None, mcmc_steps: int = 20,
                 beta_range: tuple[float, float] = (1.0, 100.0)) -> None:
        if n_objectives < 2:
            raise ValueError(f"a trade-off needs at least 2 objectives, got {n_objectives}")
        sc = np.broadcast_to(np.asarray(scale, float), (int(n_objectives),)).copy()
        if not (sc > 0).all():
            raise ValueError(f"scale must be > 0 for every objective, got {scale}")
        self.k = int(n_objectives)
        self.scale = sc
        self.learn_beta = beta is None
        self.log_beta_range = (float(np.log(beta_range[0])), float(np.log(beta_range[1])))
        self.alpha = float(prior_alpha)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.mcmc_steps = int(mcmc_steps)
        self.particles = self.rng.dirichlet(np.full(self.k, self.alpha), size=int(n_samples))
        """Weights on the range-normalised objectives (``v``); :attr:`samples` are the raw-return weights."""
        n = len(self.particles)
        self.betas = (np.exp(self.rng.uniform(*self.log_beta_range, size=n)) if beta is None
                      else np.full(n, float(beta)))
        """Each particle's rationality (all equal unless ``beta`` is learned)."""
        self.logw = np.zeros(len(self.samples))
        self.answers: list[Answer] = []
        self.resamples = 0

    # -- likelihood ---------------------------------------------------------------------------
    def _loglik(self, w: np.ndarray, answers: Sequence[Answer], betas: np.ndarray) -> np.ndarray:
        """Log-likelihood of ``answers`` for each row of ``w`` (with rationality ``betas``)."""
        if not answers:
            return np.zeros(len(w))
        d = np.stack([x.a - x.b for x in answers])  # (m, k)
        y = np.array([x.label for x in answers])
        z = betas[:, None] * (w @ (d / self.scale).T)  # (n, m)
        return (y * _log_sigmoid(z) + (1 - y) * _log_sigmoid(-z)).sum(axis=1)

    # -- updating -------------------------------------------------------------------------------
    def update(self, a: Any, b: Any, label: float | None) -> None:
        """Add one answer (``None``: skipped, ignored); rejuvenate the particles when they degenerate."""
        if label is None:
            return
        ans = Answer(np.asarray(a, float), np.asarray(b, float), float(label))
        if ans.a.shape != (self.k,) or ans.b.shape != (self.k,):
            raise ValueError(f"outcomes must have {self.k} entries, got {ans.a.shape} and {ans.b.shape}")
        self.answers.append(ans)
        self.logw += self._loglik(self.particles, [ans], self.betas)
        self.logw -= self.logw.max()
        if self.ess < 0.5 * len(self.particles):
            self._rejuvenate()

    def _log_target(self, w: np.ndarray, betas: np.ndarray) -> np.ndarray:
        prior = (self.alpha - 1.0) * np.log(np.clip(w, 1e-300, None)).sum(axis=1) if self.alpha != 1.0 else 0.0
        return self._loglik(w, self.answers, betas) + prior

    def _rejuvenate(self) -> None:
        n = len(self.particles)
        p = self.normalised_weights
        # systematic resampling
        pos = (self.rng.random() + np.arange(n)) / n
        idx = np.minimum(np.searchsorted(np.cumsum(p), pos), n - 1)
        x, b = self.particles[idx], self.betas[idx]
        lt = self._log_target(x, b)
        # step size from the spread of the resampled cloud, per coordinate; proposals are symmetric
        # (zero-sum Gaussian steps), points leaving the simplex are rejected
        step = np.maximum(x.std(axis=0).mean(), 1e-3)
        for _ in range(self.mcmc_steps):
            eps = self.rng.normal(0.0, step, size=x.shape)
            eps -= eps.mean(axis=1, keepdims=True)
            prop = x + eps
            ok = (prop >= 0).all(axis=1)
            pb = b
            if self.learn_beta:  # a random walk on log beta, inside the prior's range (uniform there)
                lpb = np.log(b) + self.rng.normal(0.0, 0.3, size=n)
                ok &= (lpb >= self.log_beta_range[0]) & (lpb <= self.log_beta_range[1])
                pb = np.exp(lpb)
            lp = np.full(n, -np.inf)
            if ok.any():
                lp[ok] = self._log_target(prop[ok], pb[ok])
            accept = np.log(self.rng.random(n)) < lp - lt
            x[accept] = prop[accept]
            b = np.where(accept, pb, b)
            lt[accept] = lp[accept]
        self.particles, self.betas = x, b
        self.logw = np.zeros(n)
        self.resamples += 1

    # -- summaries ------------------------------------------------------------------------------
    @property
    def normalised_weights(self) -> np.ndarray:
        p = np.exp(self.logw - self.logw.max())
        return p / p.sum()

    @property
    def ess(self) -> float:
        """Effective sample size of the particle weights."""
        p = self.normalised_weights
        return float(1.0 / (p**2).sum())

    @property
    def samples(self) -> np.ndarray:
        """Posterior particles as weights on the raw returns (rows on the simplex); see :attr:`normalised_weights`."""
        w = self.particles / self.scale
        return w / w.sum(axis=1, keepdims=True)

    @property
    def beta(self) -> float:
        """Posterior mean rationality (the fixed value when it is not learned)."""
        return float(self.normalised_weights @ self.betas)

    @property
    def mean(self) -> np.ndarray:
        return self.normalised_weights @ self.samples

    @property
    def cov(self) -> np.ndarray:
        return np.cov(self.samples.T, aweights=self.normalised_weights + 1e-300, bias=True)

    def draw(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """``n`` posterior samples (with replacement, by particle weight)."""
        rng = rng or self.rng
        return self.samples[rng.choice(len(self.particles), size=n, p=self.normalised_weights)]

    def to_dict(self, names: Sequence[str] | None = None, n_keep: int = 500) -> dict[str, Any]:
        """JSON-safe summary: mean, covariance, and ``n_keep`` posterior samples."""
        keep = self.draw(min(n_keep, len(self.particles)), np.random.default_rng(0))
        return {"objectives": list(names) if names else None, "mean": self.mean.tolist(),
                "cov": self.cov.tolist(), "beta": self.beta, "beta_learned": self.learn_beta, "scale": self.scale.tolist(), "prior_alpha": self.alpha,
                "answers": len(self.answers), "ess": self.ess, "resamples": self.resamples,
                "samples": keep.round(5).tolist()}


def outcome_scale(outcomes: np.ndarray) -> np.ndarray:
    """Each objective's spread (max - min) over ``outcomes`` (rows are outcome vectors); 1 where it is 0."""
    outcomes = np.asarray(outcomes, float)
    spread = outcomes.max(axis=0) - outcomes.min(axis=0)
    return np.where(spread > 0, spread, 1.0)


def cosine(u: Any, v: Any) -> float:
    u, v = np.asarray(u, float), np.asarray(v, float)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    return float(u @ v / (nu * nv)) if nu > 0 and nv > 0 else 0.0


def candidate_pairs(n: int) -> np.ndarray:
    """Every unordered pair of ``n`` outcomes, as an (m, 2) index array."""
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1)


def pair_scores(post: WeightPosterior, outcomes: np.ndarray, pairs: np.ndarray, how: str = "info",
                n_eval: int = 500) -> np.ndarray:
    """How informative each candidate pair is under the current posterior (higher is better).

    ``info``: expected information gain, ``H(E[p]) - E[H(p)]`` with ``p = P(a preferred | w)``.
    ``volume``: expected volume removal, ``1 - E[max-side mass]``, i.e. ``min(E[p], 1 - E[p])``.
    """
    if how not in ("info", "volume"):
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {how!r}")
    n = len(post.particles)
    if n > n_eval:
        idx = np.random.default_rng(len(post.answers)).choice(n, n_eval, p=post.normalised_weights)
        v, betas, pw = post.particles[idx], post.betas[idx], None
    else:
        v, betas, pw = post.particles, post.betas, post.normalised_weights
    d = (outcomes[pairs[:, 0]] - outcomes[pairs[:, 1]]) / post.scale  # (m, k)
    z = betas[:, None] * (v @ d.T)  # (n, m)
    p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
    mp = p.mean(axis=0) if pw is None else pw @ p
    if how == "volume":
        return np.minimum(mp, 1 - mp)
    eh = _entropy(p).mean(axis=0) if pw is None else pw @ _entropy(p)
    return _entropy(mp) - eh


def select_pair(post: WeightPosterior, outcomes: np.ndarray, how: str = "info", rng: np.random.Generator | None = None,
                exclude: set[tuple[int, int]] | None = None, max_candidates: int = 400) -> tuple[int, int]:
    """The next question: indices ``(i, j)`` into ``outcomes`` (ties between scores broken at random).

    Pairs in ``exclude`` (already asked) and pairs of identical outcomes are not asked again while others
    remain. With more than ``max_candidates`` pairs, a random subset of that many is scored (the cost of a
    question stays flat however many outcomes there are).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    outcomes = np.asarray(outcomes, float)
    pairs = candidate_pairs(len(outcomes))
    if len(pairs) == 0:
        raise ValueError("need at least two outcomes to ask about")
    keep = ~np.all(np.isclose(outcomes[pairs[:, 0]], outcomes[pairs[:, 1]]), axis=1)
    if exclude:
        keep &= np.array([(int(i), int(j)) not in exclude for i, j in pairs])
    if keep.any():
        pairs = pairs[keep]
    if how != "random" and len(pairs) > max_candidates:
        pairs = pairs[rng.choice(len(pairs), size=max_candidates, replace=False)]
    if how == "random":
        i, j = pairs[rng.integers(len(pairs))]
    else:
        s = pair_scores(post, outcomes, pairs, how)
        best = np.flatnonzero(s >= s.max() - 1e-12)
        i, j = pairs[rng.choice(best)]
    return (int(i), int(j)) if rng.random() < 0.5 else (int(j), int(i))
