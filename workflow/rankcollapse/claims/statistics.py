"""The statistics the claims decide on, shared with the figures that show them, so that a
figure and the claim it illustrates compute one number one way.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MIN_POINTS = 3  # fewest points a correlation or slope is computed from


def spearman(x, y) -> float:
    """Spearman ρ of the finite pairs (ties share their mean rank; pandas' rank correlation);
    NaN when fewer than 3 pairs or either variable is constant.
    """
    pairs = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)})
    pairs = pairs[np.isfinite(pairs["x"]) & np.isfinite(pairs["y"])]
    if len(pairs) < MIN_POINTS or pairs["x"].nunique() < 2 or pairs["y"].nunique() < 2:
        return math.nan
    return float(pairs.corr(method="spearman").iloc[0, 1])


def log_log_fit(x, y) -> tuple[float, float]:
    """Least-squares line log y = a + b log x over the positive finite pairs: (b, a); NaNs
    when fewer than 3 pairs or x is constant.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    usable = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    log_x, log_y = np.log(x[usable]), np.log(y[usable])
    if log_x.size < MIN_POINTS or np.ptp(log_x) == 0:
        return math.nan, math.nan
    centred = log_x - log_x.mean()
    slope = float(centred @ (log_y - log_y.mean()) / (centred @ centred))
    return slope, float(log_y.mean() - slope * log_x.mean())


def log_log_slope(x, y) -> float:
    """The slope b of :func:`log_log_fit`."""
    return log_log_fit(x, y)[0]


def hidden(table: pd.DataFrame) -> pd.Series:
    """Rows of hidden layers: min(d_in, d_out) > K, so the rank can exceed K."""
    return np.minimum(table["d_in"], table["d_out"]) > table["classes"]


def bound_slope_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows whose log tail_K is regressed on log(TCV/λ) (claim C3(b) and the bound
    figure): hidden layers, λ > 0 (the bound is undefined at λ = 0), tail_K > 0.
    """
    return rows[hidden(rows) & (rows["weight_decay"] > 0) & (rows["tail_K"] > 0)]


RUN_KEYS = ["study", "dataset", "weight_decay", "seed"]
MIN_LAMBDAS = 3  # a trend needs at least three λ values


def finished(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of finished runs only (a diverged run counts in no claim)."""
    return table[table["status"] == "finished"] if len(table) else table
