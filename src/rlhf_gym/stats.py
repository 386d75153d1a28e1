"""Statistics for few-seed RL results: interquartile mean, median, share of seeds solved, with intervals.

With 3-10 seeds a mean and a min/max say little, so results are reported the way the RL evaluation
literature recommends (Agarwal et al., 2021, "Deep RL at the edge of the statistical precipice"): the
interquartile mean (IQM, the mean of the middle 50% of runs: robust to one outlying seed, less noisy
than the median) and the median, each with a percentile confidence interval from a *stratified*
bootstrap (seeds are resampled within each task, so a table mixing tasks never swaps one task's runs
for another's), and the share of seeds solved with a Wilson score interval. A headline row counts as
better than its control only where the intervals do not overlap (:func:`clears`).

Computed with numpy alone (the same statistics as ``rliable``, which is not needed). Every function is
pure: the bootstrap takes its own seed, so the same scores give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Scores = Sequence[float] | np.ndarray
Statistic = Callable[[np.ndarray], float]

#: 97.5% quantile of the standard normal (two-sided 95% intervals)
Z95 = 1.959963984540054


def iqm(scores: Scores) -> float:
    """Interquartile mean: the mean of the scores left after dropping the lowest and highest quarter.

    ``floor(n / 4)`` scores are dropped from each end (as ``scipy.stats.trim_mean(x, 0.25)`` does), so
    5 seeds give the mean of the middle 3, 4 seeds the mean of the middle 2, 1-3 seeds the plain mean.
    """
    x = np.sort(np.asarray(scores, dtype=float).ravel())
    if x.size == 0:
        raise ValueError("iqm of no scores")
    cut = x.size // 4
    return float(x[cut: x.size - cut].mean())


def median(scores: Scores) -> float:
    """The median of the scores."""
    x = np.asarray(scores, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("median of no scores")
    return float(np.median(x))


STATISTICS: dict[str, Statistic] = {"iqm": iqm, "median": median, "mean": lambda x: float(np.mean(x))}


def stratified_bootstrap_ci(strata: Mapping[str, Scores] | Sequence[Scores], statistic: Statistic | str = iqm,
                            reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over all scores, resampling seeds within each stratum.

    Args:
        strata: scores per task (a mapping or a list of score lists); one stratum for a single row.
        statistic: a function of a 1-D array, or a name in :data:`STATISTICS`.
        reps: bootstrap resamples.
        confidence: coverage of the interval.
        seed: seed of the resampling (the interval is a pure function of its arguments).

    Returns:
        ``(low, high)``. With one score per stratum the interval is the point itself: there is nothing to
        resample, and no honest interval.
    """
    fn = STATISTICS[statistic] if isinstance(statistic, str) else statistic
    groups = [np.asarray(s, dtype=float).ravel() for s in (strata.values() if isinstance(strata, Mapping) else strata)]
    groups = [g for g in groups if g.size]
    if not groups:
        raise ValueError("bootstrap of no scores")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    # one index matrix per stratum: reps x n_stratum draws with replacement from that stratum only
    draws = [g[rng.integers(0, g.size, size=(reps, g.size))] for g in groups]
    samples = np.concatenate(draws, axis=1)
    stats = np.array([fn(row) for row in samples])
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (sound at 5 seeds, unlike the normal one).

    4 of 5 gives about (0.376, 0.964), 5 of 5 (0.566, 1.0), 0 of 5 (0.0, 0.434).
    """
    if n <= 0:
        raise ValueError(f"wilson interval needs n >= 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    z = Z95 if confidence == 0.95 else _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    if successes == 0:
        lo = 0.0
    if successes == n:
        hi = 1.0
    return lo, hi


def _z(confidence: float) -> float:
    from statistics import NormalDist

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


@dataclass(frozen=True)
class Summary:
    """What a results table shows for one row: point estimates with 95% intervals over its seeds."""

    n: int
    mean: float
    iqm: float
    iqm_ci: tuple[float, float]
    median: float
    median_ci: tuple[float, float]
    min: float
    max: float
    threshold: float | None = None
    solved: int | None = None
    solved_share: float | None = None
    solved_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("iqm_ci", "median_ci", "solved_ci"):
            if d[k] is not None:
                d[k] = [float(v) for v in d[k]]
        return d


def summarise(scores: Scores, threshold: float | None = None, reps: int = 2000, seed: int = 0) -> Summary:
    """IQM and median with stratified-bootstrap intervals, and the share of seeds at or above ``threshold``."""
    x = np.asarray(scores, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("summary of no scores")
    solved = solved_share = solved_ci = None
    if threshold is not None:
        solved = int((x >= threshold).sum())
        solved_share = solved / x.size
        solved_ci = wilson_interval(solved, x.size)
    return Summary(n=int(x.size), mean=float(x.mean()), iqm=iqm(x), iqm_ci=stratified_bootstrap_ci([x], iqm, reps, seed=seed),
                   median=median(x), median_ci=stratified_bootstrap_ci([x], median, reps, seed=seed),
                   min=float(x.min()), max=float(x.max()), threshold=threshold, solved=solved,
                   solved_share=solved_share, solved_ci=solved_ci)


def clears(headline: tuple[float, float], control: tuple[float, float], higher_is_better: bool = True) -> bool:
    """Whether a headline interval lies wholly beyond its control's (no overlap): only then does it count.

    ``headline`` and ``control`` are ``(low, high)`` intervals of the same statistic.
    """
    if higher_is_better:
        return headline[0] > control[1]
    return headline[1] < control[0]


def compare(headline: Summary, control: Summary, higher_is_better: bool = True) -> dict[str, Any]:
    """Verdicts of a headline row against its control: on the IQM interval (in the metric's direction), and on
    the solved-share interval (more solved is always better).

    ``counts`` is True only where every interval available to both rows clears the control's.
    """
    out: dict[str, Any] = {"iqm_clears": clears(headline.iqm_ci, control.iqm_ci, higher_is_better)}
    if headline.solved_ci is not None and control.solved_ci is not None:
        out["solved_clears"] = clears(headline.solved_ci, control.solved_ci)
    out["counts"] = all(out.values())
    return out
