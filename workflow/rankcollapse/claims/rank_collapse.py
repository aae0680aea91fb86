"""Claims C1-C5 of the rank-collapse paper, decided from the tidy layer table (one row per
run × layer).

Each claim gives a statistic with its numbers, a verdict and the rows it rests on. Only
finished runs count; the others are listed as left out. A layer is *hidden* when
min(d_in, d_out) > K: only such a layer can have rank above K, so the output layer and any
layer of width ≤ K are listed as not applicable, never as a pass or a fail.

Thresholds come from the config's ``claims`` section (defaults in the schema), fixed before
the runs and never tuned:

- ``rank_measure``: rank column whose fall with λ (C1) and growth with the data's spread (C5)
  is tested.
- ``variability_measure``: variability column tested by C2; scale-free by default (ss_ratio),
  because weight decay shrinks the embeddings and TCV would fall from scale alone.
- ``slope_range``: C3, range the log-log slope of tail_K against TCV/λ must fall in.
- ``min_train_acc``: C4, mean training accuracy a λ needs to count as "still trains".
- ``max_rel_tail``: C4, largest tail_K/‖W‖_F of a hidden layer counted as near rank K.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .report import fmt
from .statistics import (
    MIN_LAMBDAS,
    MIN_POINTS,
    RUN_KEYS,
    bound_slope_rows,
    finished,
    hidden,
    log_log_slope,
    spearman,
)
from .verdicts import Check, Claim, Outcome, Verdict, passes, sign_check, tally, verdict_of

LAYER_KEYS = ["study", "dataset", "layer_index", "layer"]
NOT_APPLICABLE = "not applicable: min(d_in, d_out) ≤ K"


def run_count(rows: pd.DataFrame) -> int:
    """Number of distinct runs among ``rows``."""
    return len(rows[RUN_KEYS].drop_duplicates())


def worst(details: list[dict], key: str, largest: bool) -> dict | None:
    """The counted detail row with the largest (or smallest) finite ``key``."""
    rows = [d for d in details if d.get("counted") and d.get(key) is not None]
    rows = [d for d in rows if math.isfinite(d[key])]
    if not rows:
        return None
    return (max if largest else min)(rows, key=lambda d: d[key])


# ---------------------------------------------------------------- trends in λ (C1, C2)


def trend_in_lambda(
    rows: pd.DataFrame, measures: list[str], counted_measures: list[str], want: str
) -> list[dict]:
    """Per (study, dataset, layer) and measure: Spearman ρ between λ and the measure over the
    finished runs, seeds pooled; a group counts when it has ≥ 3 distinct λ values and the
    measure is one of ``counted_measures``.
    """
    details = []
    for (study, dataset, _, layer), group in rows.groupby(LAYER_KEYS, sort=True):
        n_lambdas = group["weight_decay"].nunique()
        for measure in measures:
            rho = spearman(group["weight_decay"], group[measure])
            enough = n_lambdas >= MIN_LAMBDAS
            counted = enough and measure in counted_measures
            if not enough:
                result = Check(
                    Outcome.NOT_COUNTED, f"not counted: {n_lambdas} λ values < {MIN_LAMBDAS}"
                )
            elif measure not in counted_measures:
                result = Check(Outcome.INFORMATION, "information only")
            else:
                result = sign_check(rho, want)
            details.append(
                {
                    "study": study,
                    "dataset": dataset,
                    "layer": layer,
                    "measure": measure,
                    "n": int(group[measure].notna().sum()),
                    "n_lambdas": int(n_lambdas),
                    "rho": rho,
                    "counted": bool(counted),
                    "result": result,
                }
            )
    return details


def not_applicable_layers(rows: pd.DataFrame, reason: str) -> list[dict]:
    """One listing per (study, dataset, layer) a claim does not apply to."""
    layers = rows[LAYER_KEYS].drop_duplicates().sort_values(LAYER_KEYS)
    return [
        {
            "study": r.study,
            "dataset": r.dataset,
            "layer": r.layer,
            "measure": "—",
            "n": None,
            "n_lambdas": None,
            "rho": None,
            "counted": False,
            "result": Check(Outcome.NOT_APPLICABLE, reason),
        }
        for r in layers.itertuples()
    ]


def trend_statistic(details: list[dict], measures: str, want: str) -> str:
    """Tally of the counted groups' ρ and the one farthest from the expected sign."""
    results = [d["result"] for d in details if d["counted"]]
    if not results:
        return f"no (study, dataset, layer) group with ≥ {MIN_LAMBDAS} λ values"
    text = tally(results, f"ρ(λ, {measures}) {want}")
    extreme = worst(details, "rho", largest=want == "< 0")
    if extreme is not None:
        text += (
            f"; {'largest' if want == '< 0' else 'smallest'} ρ = {fmt(extreme['rho'])} "
            f"({extreme['study']}/{extreme['dataset']} {extreme['layer']} "
            f"{extreme['measure']}, n={extreme['n']})"
        )
    constant = sum(d["counted"] and not math.isfinite(d["rho"]) for d in details)
    if constant:
        text += f"; {constant} constant"
    return text


# ---------------------------------------------------------------- the claims


def claim_c1(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C1: Spearman ρ(λ, rank) < 0 and ρ(λ, tail_K) < 0 for every hidden layer."""
    rank = thresholds["rank_measure"]
    rows = finished(table)
    is_hidden = hidden(rows)
    measures = [rank, "tail_K"]
    details = trend_in_lambda(rows[is_hidden], measures, measures, "< 0")
    details += not_applicable_layers(rows[~is_hidden], NOT_APPLICABLE)
    verdict = verdict_of([d["result"] for d in details])
    statistic = trend_statistic(details, f"{rank} or tail_K", "< 0")
    statistic += f"; {run_count(rows)} finished runs"
    return Claim(
        "C1",
        f"Every hidden layer's rank ({rank}) and its distance tail_K to the rank-K matrices "
        "fall as the weight decay λ grows.",
        verdict,
        statistic,
        details,
    )


def claim_c2(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C2: Spearman ρ(λ, variability of the layer's input) < 0 for every layer ≥ 2."""
    variability = thresholds["variability_measure"]
    rows = finished(table)
    # Layer 1's input is the raw data, which λ cannot change.
    embedded = rows["layer_index"] >= 2
    measures = [variability] if variability == "tcv" else [variability, "tcv"]
    details = trend_in_lambda(rows[embedded], measures, [variability], "< 0")
    details += not_applicable_layers(rows[~embedded], "not applicable: input is the raw data")
    verdict = verdict_of([d["result"] for d in details])
    statistic = trend_statistic(details, variability, "< 0")
    if variability != "tcv":
        tcv_rhos = [d for d in details if d["measure"] == "tcv" and d["n_lambdas"] >= MIN_LAMBDAS]
        falling = sum(d["rho"] < 0 for d in tcv_rhos)
        statistic += f"; for information ρ(λ, tcv) < 0 in {falling} of {len(tcv_rhos)} groups"
    return Claim(
        "C2",
        f"The within-class variability ({variability}) of the hidden embeddings (the inputs of "
        "layers 2..L) falls as λ grows. The measure is scale-free because weight decay shrinks "
        "the embeddings' scale, so TCV would fall for that reason alone; TCV's ρ is reported "
        "for information only.",
        verdict,
        statistic,
        details,
    )


def bound_checks(rows: pd.DataFrame) -> pd.Series:
    """bound_holds of the rows with λ > 0 as True/False, None where it was not evaluated."""
    values = rows.loc[rows["weight_decay"] > 0, "bound_holds"]
    return values.map(lambda v: None if pd.isna(v) else bool(v)).astype(object)


def bound_part(rows: pd.DataFrame) -> tuple[Verdict, str, list[dict]]:
    """C3(a): counts of bound checks tail_K ≤ ||E||_F/(Nλ) + ||R||_F/λ and their violations."""
    checks = bound_checks(rows)
    checked = checks.notna()
    violated = checks.map(lambda v: v is False).astype(bool)
    n_checks, n_violations = int(checked.sum()), int(violated.sum())
    unchecked = int((~checked).sum())
    if n_checks == 0:
        verdict = Verdict.NOT_RUN
    else:
        verdict = Verdict.HOLDS if n_violations == 0 else Verdict.DOES_NOT_HOLD
    text = f"(a) {n_checks} checks, {n_violations} violations"
    if unchecked:
        text += f", {unchecked} rows with λ > 0 not evaluated"
    details = [
        {
            "part": "a",
            "study": r.study,
            "dataset": r.dataset,
            "weight_decay": r.weight_decay,
            "seed": r.seed,
            "layer": r.layer,
            "tail_K": r.tail_K,
            "bound": r.bound,
            "result": Check(Outcome.FAIL, "violation"),
        }
        for r in rows.loc[violated.index[violated]].itertuples()
    ]
    return verdict, text, details


def slope_part(rows: pd.DataFrame, slope_range: list[float]) -> tuple[Verdict, str, list[dict]]:
    """C3(b): per (study, dataset), least-squares slope of log tail_K on log(TCV/λ) over the
    hidden layers' rows with λ > 0 and tail_K > 0; each must lie in ``slope_range``. A group
    counts when it has ≥ 3 points and ≥ 3 distinct λ > 0: the claim is about the trend in λ,
    which the layers of a single λ do not show.
    """
    low, high = slope_range
    usable = bound_slope_rows(rows)
    details = []
    for (study, dataset), group in usable.groupby(["study", "dataset"], sort=True):
        slope = log_log_slope(group["tcv_over_wd"], group["tail_K"])
        n = int((np.isfinite(group["tcv_over_wd"]) & (group["tcv_over_wd"] > 0)).sum())
        n_lambdas = int(group["weight_decay"].nunique())
        counted = n >= MIN_POINTS and n_lambdas >= MIN_LAMBDAS
        if n < MIN_POINTS:
            result = Check(Outcome.NOT_COUNTED, f"not counted: {n} points < {MIN_POINTS}")
        elif not counted:
            result = Check(
                Outcome.NOT_COUNTED, f"not counted: {n_lambdas} λ values > 0 < {MIN_LAMBDAS}"
            )
        elif not math.isfinite(slope):
            result = Check(Outcome.FAIL, "fails: TCV/λ constant (slope undefined)")
        else:
            result = passes(
                low <= slope <= high,
                f"slope in [{low:g}, {high:g}]",
                f"fails: slope outside [{low:g}, {high:g}]",
            )
        details.append(
            {
                "part": "b",
                "study": study,
                "dataset": dataset,
                "slope": slope,
                "n": n,
                "counted": counted,
                "result": result,
            }
        )
    verdict = verdict_of([d["result"] for d in details])
    slopes = ", ".join(
        f"{d['study']}/{d['dataset']} {fmt(d['slope'])} (n={d['n']})"
        for d in details
        if d["counted"]
    )
    text = f"(b) slopes of log tail_K on log(TCV/λ): {slopes or 'none computable'}"
    return verdict, text, details


def both_parts(verdict_a: Verdict, verdict_b: Verdict) -> Verdict:
    """C3 holds iff both parts hold; one failing part fails it; otherwise it is not run."""
    if Verdict.DOES_NOT_HOLD in (verdict_a, verdict_b):
        return Verdict.DOES_NOT_HOLD
    return Verdict.HOLDS if verdict_a == verdict_b == Verdict.HOLDS else Verdict.NOT_RUN


def claim_c3(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C3: (a) the bound holds on every layer of every run with λ > 0; (b) the log-log slope
    of tail_K against TCV/λ lies in slope_range for every (study, dataset).
    """
    rows = finished(table)
    low, high = thresholds["slope_range"]
    verdict_a, text_a, details_a = bound_part(rows)
    verdict_b, text_b, details_b = slope_part(rows, [low, high])
    statistic = f"{text_a} → {verdict_a}; {text_b} → {verdict_b}"
    return Claim(
        "C3",
        "(a) The bound tail_K(W) ≤ ||E||_F/(Nλ) + ||R||_F/λ holds on every layer of every run "
        f"with λ > 0; (b) tail_K tracks TCV/λ: the log-log slope lies in [{low:g}, {high:g}].",
        both_parts(verdict_a, verdict_b),
        statistic,
        details_a + details_b,
    )


def largest_training_lambda(rows: pd.DataFrame, min_train_acc: float) -> float:
    """λ* = the largest λ > 0 whose finished runs have mean train_acc ≥ min_train_acc;
    NaN if none.
    """
    per_run = rows.groupby(RUN_KEYS, sort=True)["train_acc"].first().reset_index()
    mean_acc = per_run[per_run["weight_decay"] > 0].groupby("weight_decay")["train_acc"].mean()
    training = mean_acc[mean_acc >= min_train_acc]
    return float(training.index.max()) if len(training) else math.nan


def claim_c4(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C4: at λ*, the largest λ that still trains, every hidden layer's mean rel_tail_K is at
    most max_rel_tail. Only (study, dataset) sweeps of ≥ 3 λ values count: with fewer, the one
    λ > 0 is not "the largest that still trains" in any useful sense.
    """
    rank, min_acc = thresholds["rank_measure"], thresholds["min_train_acc"]
    max_tail = thresholds["max_rel_tail"]
    rows = finished(table)
    details = []
    for (study, dataset), group in rows.groupby(["study", "dataset"], sort=True):
        n_lambdas = int(group["weight_decay"].nunique())
        if n_lambdas < MIN_LAMBDAS:
            details.append(
                {
                    "study": study,
                    "dataset": dataset,
                    "counted": False,
                    "result": Check(
                        Outcome.NOT_COUNTED, f"not counted: {n_lambdas} λ values < {MIN_LAMBDAS}"
                    ),
                }
            )
            continue
        lambda_star = largest_training_lambda(group, min_acc)
        if not math.isfinite(lambda_star):
            details.append(
                {
                    "study": study,
                    "dataset": dataset,
                    "counted": False,
                    "result": Check(
                        Outcome.NOT_COUNTED,
                        f"not counted: no λ > 0 reaches mean train_acc ≥ {min_acc:g}",
                    ),
                }
            )
            continue
        at_star = group[group["weight_decay"] == lambda_star]
        mean_acc = at_star.groupby("seed")["train_acc"].first().mean()
        is_hidden = hidden(at_star)
        for (_, layer), layer_rows in at_star.groupby(["layer_index", "layer"]):
            rel_tail = float(layer_rows["rel_tail_K"].mean())
            applicable = bool(is_hidden[layer_rows.index].all())
            if not applicable:
                result = Check(Outcome.NOT_APPLICABLE, NOT_APPLICABLE)
            else:
                result = passes(
                    rel_tail <= max_tail,
                    f"rel_tail_K ≤ {max_tail:g}",
                    f"fails: rel_tail_K > {max_tail:g} or undefined",
                )
            details.append(
                {
                    "study": study,
                    "dataset": dataset,
                    "lambda_star": lambda_star,
                    "train_acc": float(mean_acc),
                    "layer": layer,
                    "rel_tail_K": rel_tail,
                    "rank": float(layer_rows[rank].mean()),
                    "K": int(layer_rows["classes"].iloc[0]),
                    "seeds": int(layer_rows["seed"].nunique()),
                    "counted": applicable,
                    "result": result,
                }
            )
    results = [d["result"] for d in details]
    stars = sorted(
        {(d["study"], d["dataset"], d["lambda_star"]) for d in details if "lambda_star" in d}
    )
    if stars:
        statistic = (
            tally(results, f"mean rel_tail_K ≤ {max_tail:g} at λ*")
            + "; λ* = "
            + (", ".join(f"{s}/{d} {lam:g}" for s, d, lam in stars))
        )
        extreme = worst(details, "rel_tail_K", largest=True)
        if extreme is not None:
            statistic += (
                f"; largest rel_tail_K = {fmt(extreme['rel_tail_K'])} "
                f"({extreme['study']}/{extreme['dataset']} {extreme['layer']}, "
                f"{rank} {fmt(extreme['rank'])} vs K={extreme['K']})"
            )
    else:
        statistic = f"no λ > 0 reaches mean train_acc ≥ {min_acc:g}"
    return Claim(
        "C4",
        f"At the largest λ that still trains (mean train_acc ≥ {min_acc:g}), every hidden "
        f"layer is within a small tail of rank K (mean tail_K/||W||_F ≤ {max_tail:g}).",
        verdict_of(results),
        statistic,
        details,
    )


def synthetic_studies(rows: pd.DataFrame) -> pd.DataFrame:
    """Synthetic rows (finite dataset_std) of the studies with ≥ 2 distinct spreads."""
    synthetic = rows[np.isfinite(rows["dataset_std"].astype(float))]
    spreads = synthetic.groupby("study")["dataset_std"].transform("nunique")
    return synthetic[spreads >= 2]


def claim_c5(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C5: on synthetic data at each λ > 0, Spearman ρ(dataset_std, rank) > 0 for every
    hidden layer, seeds and datasets of a study pooled.
    """
    rank = thresholds["rank_measure"]
    rows = synthetic_studies(finished(table))
    rows = rows[rows["weight_decay"] > 0]
    is_hidden = hidden(rows)
    details = []
    keys = ["study", "weight_decay", "layer_index", "layer"]
    for (study, wd, _, layer), group in rows[is_hidden].groupby(keys, sort=True):
        n_spreads = int(group["dataset_std"].nunique())
        n = int(group[rank].notna().sum())
        counted = n_spreads >= 2 and n >= MIN_POINTS
        rho = spearman(group["dataset_std"], group[rank])
        result = (
            sign_check(rho, "> 0")
            if counted
            else Check(Outcome.NOT_COUNTED, "not counted: too few spreads or runs")
        )
        details.append(
            {
                "study": study,
                "weight_decay": wd,
                "layer": layer,
                "n": n,
                "n_spreads": n_spreads,
                "rho": rho,
                "counted": counted,
                "result": result,
            }
        )
    skipped = rows.loc[~is_hidden, ["study", "layer_index", "layer"]].drop_duplicates()
    for r in skipped.sort_values(["study", "layer_index"]).itertuples():
        details.append(
            {
                "study": r.study,
                "weight_decay": None,
                "layer": r.layer,
                "n": None,
                "n_spreads": None,
                "rho": None,
                "counted": False,
                "result": Check(Outcome.NOT_APPLICABLE, NOT_APPLICABLE),
            }
        )
    results = [d["result"] for d in details]
    if any(c.counted for c in results):
        statistic = tally(results, f"ρ(dataset_std, {rank}) > 0")
        extreme = worst(details, "rho", largest=False)
        if extreme is not None:
            statistic += (
                f"; smallest ρ = {fmt(extreme['rho'])} ({extreme['study']} "
                f"λ={extreme['weight_decay']:g} {extreme['layer']}, n={extreme['n']})"
            )
        constant = sum(d["counted"] and not math.isfinite(d["rho"]) for d in details)
        if constant:
            statistic += f"; {constant} constant"
    else:
        statistic = "no study with synthetic data of ≥ 2 spreads and λ > 0"
    return Claim(
        "C5",
        f"On synthetic data, at fixed λ > 0, a hidden layer's rank ({rank}) grows with the "
        "data's within-class spread (dataset_std).",
        verdict_of(results),
        statistic,
        details,
    )


CLAIMS = [claim_c1, claim_c2, claim_c3, claim_c4, claim_c5]
