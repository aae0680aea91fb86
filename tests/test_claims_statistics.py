"""The claims' statistics against values derived by hand or by brute force."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from rankcollapse.claims.statistics import (
    counted_runs,
    hidden,
    log_log_fit,
    median_interval,
    spearman,
    t_interval,
    trend,
)


def test_spearman_perfect_monotone_and_ties():
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [5, 3, 2, -1]) == pytest.approx(-1.0)
    # ranks x = 1, 2.5, 2.5, 4 against 1, 2, 3, 4: ρ = 4.5 / sqrt(4.5 · 5) = sqrt(0.9)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))
    assert math.isnan(spearman([1, 2, 3], [7, 7, 7]))


def test_trend_exact_p_of_one_perfect_sweep_is_one_over_n_factorial():
    up = trend([1, 2, 3, 4], [10, 20, 30, 40], [0] * 4)
    assert up.rho == pytest.approx(1.0)
    assert up.p_greater == pytest.approx(1 / 24)
    assert up.p_less == pytest.approx(1.0)
    assert up.min_p == pytest.approx(1 / 24)
    assert math.isnan(up.low) and up.replicates == 1


def test_trend_permutes_within_replicates():
    # Two seeds of 3 points each, both perfectly increasing: 1 of 6 · 6 arrangements reaches
    # the observed mean ρ = 1. A seed-level offset (seed 1 shifted by 100) changes nothing.
    x, seeds = [1, 2, 3, 1, 2, 3], [0, 0, 0, 1, 1, 1]
    tr = trend(x, [1, 2, 3, 101, 102, 103], seeds)
    assert tr.rho == pytest.approx(1.0)
    assert tr.p_greater == pytest.approx(1 / 36)
    assert (tr.low, tr.high) == pytest.approx((1.0, 1.0))


def test_trend_p_value_equals_brute_force_enumeration():
    x = [0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4]
    y = [3.0, 1.0, 4.0, 5.0, 2.0, 7.0, 1.0, 8.0]
    seeds = [0] * 4 + [1] * 4
    tr = trend(x, y, seeds)
    observed = np.mean([spearman(x[:4], y[:4]), spearman(x[4:], y[4:])])
    null = [
        np.mean([spearman(x[:4], [y[i] for i in a]), spearman(x[4:], [y[4 + i] for i in b])])
        for a in itertools.permutations(range(4))
        for b in itertools.permutations(range(4))
    ]
    assert tr.rho == pytest.approx(observed)
    assert tr.p_greater == pytest.approx(np.mean(np.array(null) >= observed - 1e-12))
    assert tr.p_less == pytest.approx(np.mean(np.array(null) <= observed + 1e-12))


def test_trend_monte_carlo_beyond_the_exact_limit():
    # 3 seeds of 7 points: 7!³ ≈ 1.3e11 arrangements, so 10 000 random ones (seed 0).
    x = list(range(7)) * 3
    tr = trend(x, x, sorted([0, 1, 2] * 7))
    assert tr.p_greater == pytest.approx(1 / 10_001)
    assert trend(x, x, sorted([0, 1, 2] * 7)) == tr  # deterministic


def test_trend_smallest_p_counts_ties():
    # y = 3, 2, 1, 1 over 4 λ: the most extreme arrangement is reached by 2 of 24 orders.
    tr = trend([1, 2, 3, 4], [3, 2, 1, 1], [0] * 4)
    assert tr.p_less == pytest.approx(2 / 24)
    assert tr.min_p == pytest.approx(2 / 24)


def test_trend_constant_y_is_no_trend_and_single_x_replicates_are_dropped():
    tr = trend([1, 2, 3, 1, 1, 1], [5, 5, 5, 1, 2, 3], [0, 0, 0, 1, 1, 1])
    assert tr.replicates == 1 and tr.rho == 0.0 and tr.p_greater == 1.0


def test_t_interval_matches_the_t_quantile():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302652729749464 / math.sqrt(3))
    assert math.isnan(t_interval([1.0])[1])


def test_median_interval_resamples_runs_and_contains_the_median():
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    runs = [0, 0, 1, 1, 2, 2, 3, 3]
    median, low, high = median_interval(values, runs)
    assert median == pytest.approx(0.45)
    assert 0.1 <= low <= median <= high <= 0.8
    assert median_interval(values, runs) == (median, low, high)
    # One run of ten zeros and two runs of one value each: resampling rows would almost never
    # draw a median above 0; resampling runs does whenever the big run is left out.
    median, low, high = median_interval([0.0] * 10 + [1.0, 2.0], [0] * 10 + [1, 2])
    assert median == 0.0 and high > 0
    assert math.isnan(median_interval([1.0, 2.0], [0, 1])[1])  # fewer than 3 runs


def test_log_log_fit_of_an_exact_power_law():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    fit = log_log_fit(x, 3 * x**1.5)
    assert fit.slope == pytest.approx(1.5)
    assert math.exp(fit.intercept) == pytest.approx(3)
    assert (fit.low, fit.high) == pytest.approx((1.5, 1.5))


def test_hidden_and_counted_runs():
    rows = pd.DataFrame(
        {
            "d_in": [10, 8, 8],
            "d_out": [8, 8, 3],
            "classes": [3, 3, 3],
            "status": ["finished", "finished", "diverged"],
            "weight_decay": [1e-3, 0.0, 1e-3],
            "stationary": [True, False, True],
            "train_acc": [1.0, 1.0, 1.0],
        }
    )
    assert hidden(rows).tolist() == [True, True, False]
    assert counted_runs(rows, 0.9).index.tolist() == [0]
    assert counted_runs(rows.assign(train_acc=0.5), 0.9).empty
