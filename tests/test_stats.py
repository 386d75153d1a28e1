"""rlhf_gym.stats against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_gym import stats


def test_iqm_drops_a_quarter_from_each_end():
    assert stats.iqm([1, 2, 3, 4, 5]) == pytest.approx(3.0)
    # an outlying seed moves the mean (22) but not the IQM: mean of the middle three, 2, 3, 4
    assert stats.iqm([100, 2, 3, 4, 1]) == pytest.approx(3.0)
    # 8 scores: drop 2 from each end, mean of 3..6
    assert stats.iqm([8, 7, 6, 5, 4, 3, 2, 1]) == pytest.approx(4.5)
    # 3 scores: nothing to drop
    assert stats.iqm([0, 0, 9]) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        stats.iqm([])


def test_median():
    assert stats.median([5, 1, 3]) == 3.0
    assert stats.median([4, 1, 3, 2]) == 2.5


def test_wilson_interval_hand_values():
    # p=0.8, n=5, z=1.96: centre (0.8 + 0.3841)/1.7683 = 0.6697, half 1.96*sqrt(0.032+0.0384)/1.7683 = 0.2941
    lo, hi = stats.wilson_interval(4, 5)
    assert lo == pytest.approx(0.3755, abs=1e-3) and hi == pytest.approx(0.9638, abs=1e-3)
    assert stats.wilson_interval(5, 5) == pytest.approx((0.5655, 1.0), abs=1e-3)
    assert stats.wilson_interval(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-3)
    # 1 of 3: (0.0615, 0.7923)
    assert stats.wilson_interval(1, 3) == pytest.approx((0.0615, 0.7923), abs=1e-3)
    with pytest.raises(ValueError):
        stats.wilson_interval(6, 5)


def test_bootstrap_of_two_values_spans_both():
    # resampled means of [0, 1]: 0 (p=1/4), 0.5 (1/2), 1 (1/4): the 95% percentile interval is [0, 1]
    assert stats.stratified_bootstrap_ci([[0.0, 1.0]], "mean", reps=4000) == (0.0, 1.0)
    # a constant row has a zero-width interval
    assert stats.stratified_bootstrap_ci([[3.0] * 5], stats.iqm) == (3.0, 3.0)


def test_bootstrap_is_stratified():
    # two tasks, each constant within itself: every stratified resample has three 0s and three 10s, so the
    # mean is always 5; resampling the pooled six scores would give a wide interval
    lo, hi = stats.stratified_bootstrap_ci({"a": [0, 0, 0], "b": [10, 10, 10]}, "mean")
    assert (lo, hi) == (5.0, 5.0)
    pooled = stats.stratified_bootstrap_ci([[0, 0, 0, 10, 10, 10]], "mean")
    assert pooled[0] < 3 and pooled[1] > 7


def test_bootstrap_is_seeded_and_covers_the_point():
    x = np.array([10.0, 200, 480, 500, 500])
    a = stats.stratified_bootstrap_ci([x], stats.iqm, seed=3)
    assert a == stats.stratified_bootstrap_ci([x], stats.iqm, seed=3)
    assert a[0] <= stats.iqm(x) <= a[1]
    assert a[0] >= 10 and a[1] <= 500


def test_summary_and_comparison():
    head = stats.summarise([500, 500, 480, 500, 500], threshold=475)
    ctrl = stats.summarise([9, 30, 12, 400, 20], threshold=475)
    assert head.solved == 5 and head.solved_share == 1.0 and ctrl.solved == 0
    assert head.iqm == pytest.approx(500.0) and ctrl.iqm == pytest.approx((12 + 20 + 30) / 3)
    v = stats.compare(head, ctrl)
    assert v == {"iqm_clears": True, "solved_clears": True, "counts": True}
    # 5/5 against 1/5 solved: Wilson (0.57, 1) overlaps (0.04, 0.62), so it does not count
    one = stats.summarise([9, 30, 12, 500, 20], threshold=475)
    assert stats.compare(head, one) == {"iqm_clears": True, "solved_clears": False, "counts": False}
    d = head.to_dict()
    assert d["solved_ci"] == pytest.approx([0.5655, 1.0], abs=1e-3)


def test_four_of_five_against_one_of_three_does_not_count():
    # the case: Pendulum 4/5 solved against a control solving 1/3 is not a significant difference
    head = stats.summarise([-150, -160, -170, -180, -900], threshold=-200)
    ctrl = stats.summarise([-150, -1200, -1300], threshold=-200)
    v = stats.compare(head, ctrl)
    assert v["solved_clears"] is False and v["counts"] is False
    assert stats.clears((0.5, 0.9), (0.1, 0.4)) and not stats.clears((0.3, 0.9), (0.1, 0.4))
    assert stats.clears((1.0, 2.0), (3.0, 4.0), higher_is_better=False)


def test_compare_follows_the_metrics_direction():
    """A lower-is-better metric (answers to solve) clears its control when its interval lies wholly below."""
    from rlhf_gym import stats

    few = stats.summarise([20, 30, 30, 25, 30])
    many = stats.summarise([400, 500, 450, 600, 550])
    assert stats.compare(few, many, higher_is_better=False)["iqm_clears"]
    assert not stats.compare(few, many)["iqm_clears"]
    assert stats.compare(many, few)["iqm_clears"]
