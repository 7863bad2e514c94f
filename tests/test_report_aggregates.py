"""Aggregates and bootstrap CIs equal rliable's (same definitions, same resampling stream)."""

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from plastic.report import aggregates

RLIABLE = {
    "iqm": metrics.aggregate_iqm,
    "median": metrics.aggregate_median,
    "mean": metrics.aggregate_mean,
    "optimality_gap": metrics.aggregate_optimality_gap,
}


def _random_matrix(seed, runs, tasks):
    return np.random.RandomState(seed).gamma(1.0, 0.8, size=(runs, tasks))


def test_iqm_by_hand():
    # 8 values: sorted -50, 1, 3, 4, 5, 6, 7, 100; trim int(0.25 * 8) = 2 each end -> mean of 3, 4, 5, 6.
    scores = np.array([[1.0, 100.0, 3.0, 4.0], [5.0, 6.0, -50.0, 7.0]])
    assert aggregates.interquartile_mean(scores) == pytest.approx(4.5)
    assert aggregates.median_of_task_means(scores) == pytest.approx(np.median([3.0, 53.0, -23.5, 5.5]))
    assert aggregates.optimality_gap(np.array([[0.5, 2.0], [1.0, -1.0]])) == pytest.approx((0.5 + 0 + 0 + 2.0) / 4)


@pytest.mark.parametrize("shape", [(5, 7), (3, 26), (10, 4)])
def test_point_estimates_and_cis_equal_rliable(shape):
    scores = _random_matrix(sum(shape), *shape)
    mine = aggregates.aggregate_estimates(scores, reps=200, seed=7)
    for name, function in RLIABLE.items():
        np.random.seed(7)  # rliable draws its resamples from the global numpy stream
        point, interval = rly.get_interval_estimates({"m": scores}, lambda x: np.array([function(x)]), reps=200)
        assert mine[name].value == pytest.approx(float(point["m"][0]), rel=1e-12, abs=1e-12), name
        assert mine[name].ci_low == pytest.approx(float(interval["m"][0, 0]), rel=1e-12), name
        assert mine[name].ci_high == pytest.approx(float(interval["m"][1, 0]), rel=1e-12), name


def test_probability_of_improvement_equals_rliable():
    x = np.round(_random_matrix(1, 5, 6), 1)  # rounding makes ties, which count one half
    y = np.round(_random_matrix(2, 3, 6), 1)
    assert aggregates.probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
    assert aggregates.probability_of_improvement(x, x) == pytest.approx(0.5)
    estimate = aggregates.probability_of_improvement_estimate(x, y, reps=300, seed=3)
    np.random.seed(3)
    _, interval = rly.get_interval_estimates({"xy": [x, y]}, lambda a, b: np.array([
        metrics.probability_of_improvement(a, b)]), reps=300)  # fmt: skip
    # rliable interleaves the x and y draws per resample, so the streams differ: agreement within bootstrap noise.
    assert estimate.ci_low == pytest.approx(float(interval["xy"][0, 0]), abs=0.06)
    assert estimate.ci_high == pytest.approx(float(interval["xy"][1, 0]), abs=0.06)


def test_performance_profile_equals_rliable_score_distribution():
    scores = _random_matrix(4, 5, 8)
    taus = np.linspace(0.0, 2.0, 11)
    profile, low, high = aggregates.performance_profile(scores, taus, reps=100, seed=0)
    expected, _ = rly.create_performance_profile({"m": scores}, taus, reps=10)
    np.testing.assert_allclose(profile, expected["m"])
    assert np.all(low <= profile + 1e-12) and np.all(profile <= high + 1e-12)


def test_cis_cover_the_point_estimate_and_shrink_with_more_runs():
    rng = np.random.RandomState(0)
    widths = []
    for runs in (3, 30):
        scores = rng.normal(0.5, 0.3, size=(runs, 10))
        estimates = aggregates.aggregate_estimates(scores, reps=500, seed=1)
        for estimate in estimates.values():
            assert estimate.ci_low <= estimate.value <= estimate.ci_high
        widths.append({name: e.ci_high - e.ci_low for name, e in estimates.items()})
    for name in aggregates.AGGREGATES:
        assert widths[1][name] < 0.6 * widths[0][name], name


def test_same_seed_same_intervals_and_bad_arguments_are_named():
    scores = _random_matrix(9, 4, 5)
    assert aggregates.aggregate_estimates(scores, reps=50, seed=5) == aggregates.aggregate_estimates(
        scores, reps=50, seed=5
    )
    with pytest.raises(ValueError, match="reps"):
        aggregates.aggregate_estimates(scores, reps=0)
    with pytest.raises(ValueError, match="finite"):
        aggregates.aggregate_estimates(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="confidence"):
        aggregates.aggregate_estimates(scores, reps=10, confidence=1.5)
