"""The statistics the claims decide on, shared with the figures that show them, so that a
figure and the claim it illustrates compute one number one way (docs/science.md §7).

- :func:`trend`: a rank correlation within replicates (seeds, or networks), averaged, with a
  stratified permutation p-value in each direction and a t-interval across replicates.
- :func:`t_interval`: a mean over replicates with its t-interval.
- :func:`median_interval`: a median over rows with a bootstrap interval that resamples runs.
- :func:`log_log_fit`: a least-squares slope with its t-interval.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

MIN_POINTS = 3  # fewest points a correlation or slope is computed from
CONFIDENCE = 0.95  # of every interval the claims report
EXACT_LIMIT = 200_000  # permutation distributions up to this size are enumerated exactly
RESAMPLES = 10_000  # Monte Carlo permutations or bootstrap resamples beyond it (seed 0)

RUN_KEYS = ["study", "dataset", "weight_decay", "seed"]
MIN_LAMBDAS = 3  # a trend in λ needs runs at three values of λ > 0


def spearman(x, y) -> float:
    """Spearman ρ of the finite pairs (ties share their mean rank; pandas' rank correlation);
    NaN when fewer than 3 pairs or either variable is constant.
    """
    pairs = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)})
    pairs = pairs[np.isfinite(pairs["x"]) & np.isfinite(pairs["y"])]
    if len(pairs) < MIN_POINTS or pairs["x"].nunique() < 2 or pairs["y"].nunique() < 2:
        return math.nan
    return float(pairs.corr(method="spearman").iloc[0, 1])


def t_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean of finite ``values`` and its two-sided t-interval at
    CONFIDENCE; the interval is NaN with fewer than 2 values.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return mean, float(mean - half), float(mean + half)


@dataclass(frozen=True)
class Trend:
    """A rank correlation within replicates: ``rho`` the mean of the replicates' Spearman ρ,
    ``low``/``high`` its t-interval across replicates (NaN with one), ``p_greater``/``p_less``
    one-sided permutation p-values (y permuted within each replicate), ``min_p`` the smallest
    p-value these points can give, ``n`` the points and ``replicates`` those counted.
    """

    rho: float
    low: float
    high: float
    p_greater: float
    p_less: float
    min_p: float
    n: int
    replicates: int

    def p(self, want: str) -> float:
        return self.p_greater if want == ">" else self.p_less


def centred_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share them), centred and scaled to unit norm; zeros if constant."""
    r = stats.rankdata(values)
    r = r - r.mean()
    norm = np.sqrt(r @ r)
    return r / norm if norm > 0 else r


def permutation_rhos(rx: np.ndarray, ry: np.ndarray, draws: int | None, rng) -> np.ndarray:
    """Spearman ρ of one replicate under every permutation of y (``draws`` None) or under
    ``draws`` random ones, as ρ = rx · ry[perm] for unit-norm centred ranks.
    """
    if draws is None:
        perms = np.array(list(itertools.permutations(range(len(ry)))))
    else:
        perms = np.argsort(rng.random((draws, len(ry))), axis=1)
    return ry[perms] @ rx


def trend(x, y, replicate) -> Trend:
    """Spearman ρ of y on x within each replicate, averaged over the replicates with at least
    2 distinct x values (a replicate whose y is constant has ρ = 0: no trend measurable).

    The p-values come from the exact permutation distribution of the mean when it has at most
    EXACT_LIMIT members, else from RESAMPLES random permutations (seed 0; p = (b + 1)/(B + 1)).
    """
    frame = pd.DataFrame(
        {"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float), "r": list(replicate)}
    )
    frame = frame[np.isfinite(frame["x"]) & np.isfinite(frame["y"])]
    groups = [g for _, g in frame.groupby("r", sort=True) if g["x"].nunique() >= 2]
    n = int(sum(len(g) for g in groups))
    if not groups:
        return Trend(math.nan, math.nan, math.nan, 1.0, 1.0, 1.0, n, 0)
    ranks = [(centred_ranks(g["x"].to_numpy()), centred_ranks(g["y"].to_numpy())) for g in groups]
    rhos = np.array([rx @ ry for rx, ry in ranks])
    # A replicate with a constant y has ρ = 0 under every permutation: it only scales the mean.
    varying = [(rx, ry) for rx, ry in ranks if ry.any()]
    size = math.prod(math.factorial(len(rx)) for rx, _ in varying)
    rng = np.random.default_rng(0)
    draws = None if size <= EXACT_LIMIT else RESAMPLES
    total = np.zeros(1 if draws is None else draws)
    for rx, ry in varying:
        null = permutation_rhos(rx, ry, draws, rng)
        total = (total[:, None] + null[None, :]).ravel() if draws is None else total + null
    null_mean = total / len(ranks)
    observed, tol = float(rhos.mean()), 1e-12
    if draws is None:
        p_greater = float(np.mean(null_mean >= observed - tol))
        p_less = float(np.mean(null_mean <= observed + tol))
        # The smallest p any arrangement reaches (ties in y make it larger than 1/size).
        min_p = float(
            min(
                np.mean(null_mean >= null_mean.max() - tol),
                np.mean(null_mean <= null_mean.min() + tol),
            )
        )
    else:
        p_greater = float((np.sum(null_mean >= observed - tol) + 1) / (draws + 1))
        p_less = float((np.sum(null_mean <= observed + tol) + 1) / (draws + 1))
        min_p = 1.0 / (draws + 1)
    _, low, high = t_interval(rhos)
    if math.isfinite(low):
        low, high = max(low, -1.0), min(high, 1.0)
    return Trend(observed, low, high, p_greater, p_less, min_p, n, len(groups))


def median_interval(values, clusters) -> tuple[float, float, float]:
    """(median, low, high): the median of finite ``values`` and its percentile bootstrap
    interval at CONFIDENCE from RESAMPLES resamples of whole clusters (runs: a run's layers
    are not independent), seed 0; NaN interval with fewer than 3 clusters.
    """
    frame = pd.DataFrame({"v": np.asarray(values, dtype=float), "c": list(clusters)})
    frame = frame[np.isfinite(frame["v"])]
    if frame.empty:
        return math.nan, math.nan, math.nan
    median = float(frame["v"].median())
    members = [g.to_numpy() for _, g in frame.groupby("c", sort=True)["v"]]
    if len(members) < MIN_POINTS:
        return median, math.nan, math.nan
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(members), size=(RESAMPLES, len(members)))
    medians = np.array([np.median(np.concatenate([members[i] for i in row])) for row in picks])
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return median, float(low), float(high)


@dataclass(frozen=True)
class Fit:
    """Least-squares line log y = intercept + slope · log x, the slope's t-interval, n."""

    slope: float
    intercept: float
    low: float
    high: float
    n: int


def log_log_fit(x, y) -> Fit:
    """The least-squares line of log y on log x over the positive finite pairs; NaNs when
    fewer than 3 pairs or x is constant.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    usable = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    log_x, log_y = np.log(x[usable]), np.log(y[usable])
    n = int(log_x.size)
    if n < MIN_POINTS or np.ptp(log_x) == 0:
        return Fit(math.nan, math.nan, math.nan, math.nan, n)
    centred = log_x - log_x.mean()
    slope = float(centred @ (log_y - log_y.mean()) / (centred @ centred))
    intercept = float(log_y.mean() - slope * log_x.mean())
    residual = log_y - intercept - slope * log_x
    se = math.sqrt(float(residual @ residual) / (n - 2) / float(centred @ centred))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 2) * se
    return Fit(slope, intercept, float(slope - half), float(slope + half), n)


def hidden(table: pd.DataFrame) -> pd.Series:
    """Rows of hidden layers: min(d_in, d_out) > K, so the rank can exceed K."""
    return np.minimum(table["d_in"], table["d_out"]) > table["classes"]


def supervised(table: pd.DataFrame | None) -> pd.DataFrame | None:
    """Rows of runs trained with labels (``objective`` supervised; tables made before the
    column existed hold only those): paper A's claims and U1-U5 read these.
    """
    if table is None or "objective" not in table:
        return table
    # Rows of tables made before the column (NaN once joined with newer ones) are supervised.
    return table[table["objective"].fillna("supervised") == "supervised"]


def finished(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of finished runs only (a diverged run counts in no claim)."""
    return table[table["status"] == "finished"] if len(table) else table


def is_certified(table: pd.DataFrame) -> pd.Series:
    """Rows of runs certified stationary (λ > 0 and max_l ‖R_l‖/‖λW_l‖ ≤ tol)."""
    return table["stationary"].fillna(False).astype(bool) & (table["weight_decay"] > 0)


def is_counted(table: pd.DataFrame, min_train_acc: float) -> pd.Series:
    """Rows paper A's claims count: finished runs with λ > 0, certified stationary, whose
    training accuracy reaches ``min_train_acc`` (a run that does not fit its classes has no
    K-class structure for the theorem to act on).
    """
    return (
        (table["status"] == "finished")
        & is_certified(table)
        & (table["train_acc"] >= min_train_acc)
    )


def counted_runs(table: pd.DataFrame, min_train_acc: float) -> pd.DataFrame:
    """The rows of :func:`is_counted`."""
    return table[is_counted(table, min_train_acc)] if len(table) else table


def bound_slope_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows whose log tail_K is regressed on the bound's terms (claim C3b and the bound
    figure): hidden layers, λ > 0 (the bound is undefined at λ = 0), tail_K > 0.
    """
    return rows[hidden(rows) & (rows["weight_decay"] > 0) & (rows["tail_K"] > 0)]
