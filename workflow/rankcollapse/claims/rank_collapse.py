"""Claims C1-C5 and P of the rank-collapse paper, and the neural-collapse findings beside
them, decided from the tidy layer table (one row per run × layer) by the pre-registered rules
of docs/science.md §7.

The theorem speaks about stationary points, so every claim but the implementation check C3(a)
counts only *counted runs* (:func:`.statistics.counted_runs`: finished, λ > 0, certified
stationary, training accuracy ≥ ``min_train_acc``); the others are listed as not counted. A
layer is *hidden* when min(d_in, d_out) > K; only such a layer can have rank above K. Layer 1's
input is the raw data, which λ cannot change, so in the trends in λ (C1, C4) it is a *control*:
computed and shown, never scored.

Thresholds come from the config's ``claims`` section (defaults in the schema), fixed before
the runs and never tuned:

- ``alpha``: one-sided significance level of every trend test.
- ``distance_measures``: the scale-free distances to rank K (C1, C5, P).
- ``rank_measure``: a rank column reported beside C1 and C5 for information.
- ``variability_measure``: the input variability of C2 and P.
- ``min_train_acc``: the training accuracy a run needs to count, and a λ's runs on average
  to "still train" (C4).
- ``max_rel_tail``: C4, the largest mean tail_K/‖W‖_F counted as near rank K.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .report import fmt
from .statistics import (
    MIN_LAMBDAS,
    RUN_KEYS,
    bound_slope_rows,
    counted_runs,
    finished,
    hidden,
    is_certified,
    is_counted,
    log_log_fit,
    median_interval,
    trend,
)
from .verdicts import (
    Check,
    Claim,
    Kind,
    Outcome,
    Verdict,
    against_line,
    headline,
    mean_check,
    tally,
    trend_check,
    verdict_of,
)

LAYER_KEYS = ["study", "dataset", "layer_index", "layer"]
CONTROL = "control: layer 1's input is the raw data, which λ cannot change"
NOT_A_SWEEP = "not applicable: the study has fewer than 3 values of λ > 0"


def candidates(table: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """Finished rows with λ > 0, marked ``counted`` where :func:`.statistics.is_counted`: the
    groups of paper A's claims are formed over these, and tested on the counted rows, so a
    group whose runs were not certified shows as too few points instead of vanishing.
    """
    rows = finished(table)
    rows = rows[rows["weight_decay"] > 0]
    return rows.assign(counted=is_counted(rows, thresholds["min_train_acc"]))


def sweeps(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of the (study, dataset) pairs whose finished runs span ≥ MIN_LAMBDAS λ > 0."""
    positive = rows["weight_decay"].where(rows["weight_decay"] > 0)
    n_lambdas = positive.groupby([rows["study"], rows["dataset"]]).transform("nunique")
    return rows[n_lambdas >= MIN_LAMBDAS]


def trend_row(
    group: pd.DataFrame, x: str, y: str, want: str, alpha: float, min_x: int, **keys
) -> dict:
    """One detail row: the trend of ``y`` on ``x`` within seeds over the counted rows of
    ``group``, judged by :func:`.verdicts.trend_check`; too few points when they hold fewer
    than ``min_x`` distinct x values; inconclusive when ``y`` has no finite value there (a
    measure that is missing must not let a claim hold on the others).
    """
    group = group[group["counted"]]
    tr = trend(group[x], group[y], group["seed"])
    n_x = int(group[x].nunique())
    if n_x < min_x:
        result = Check(Outcome.TOO_FEW, f"too few points: counted runs at {n_x} {x} value(s)")
    elif not np.isfinite(group[y].astype(float)).any():
        result = Check(Outcome.INCONCLUSIVE, f"inconclusive: no finite {y} in counted runs")
    else:
        result = trend_check(tr, want, alpha, f"ρ̄({x}, {y})")
    return {
        **keys,
        "measure": y,
        "runs": run_count(group),
        "n": tr.n,
        "value": tr.rho,
        "low": tr.low,
        "high": tr.high,
        "p": tr.p(want),
        "result": result,
    }


def run_count(rows: pd.DataFrame) -> int:
    """Number of distinct runs among ``rows``."""
    return len(rows[RUN_KEYS].drop_duplicates())


def relabel(row: dict, outcome: Outcome, note: str) -> dict:
    """``row`` shown, not scored: a control or an information-only trend."""
    return {**row, "result": Check(outcome, note)}


def summary(details: list[dict], want: str, what: str, unit: str = "groups") -> tuple:
    """(statistic text, headline row) of a claim's counted details."""
    results = [d["result"] for d in details]
    top = headline(details, want)
    text = tally(results, unit)
    if top is not None:
        where = " ".join(
            str(top[k]) for k in ("study", "dataset", "layer") if top.get(k) is not None
        )
        if top.get("weight_decay") is not None:
            where += f" λ={top['weight_decay']:g}"
        text += (
            f"; deciding: {what} = {fmt(top['value'])} [{fmt(top['low'])}, {fmt(top['high'])}]"
            f" ({where}, {top.get('measure', '')}, n={top.get('n')})"
        )
    return text, top


def claim_record(
    claim_id, statement, rule, details, want, what, line, runs, kind=Kind.EVIDENCE
) -> Claim:
    """A claim decided by :func:`.verdicts.verdict_of` over ``details``, headed by its
    deciding row.
    """
    text, top = summary(details, want, what)
    return Claim(
        claim_id,
        statement,
        rule,
        verdict_of([d["result"] for d in details]),
        f"{text}; {runs} counted runs",
        details,
        kind=kind,
        n=runs,
        value=None if top is None else top["value"],
        low=None if top is None else top["low"],
        high=None if top is None else top["high"],
        line=line,
        measure=what,
    )


# ---------------------------------------------------------------- the claims


def claim_c1(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C1: within seeds, each hidden layer's scale-free distance to rank K falls with λ."""
    alpha, measures = thresholds["alpha"], thresholds["distance_measures"]
    rows = sweeps(candidates(table, thresholds))
    rows = rows[hidden(rows)]
    details = []
    for (study, dataset, index, layer), group in rows.groupby(LAYER_KEYS, sort=True):
        keys = {"study": study, "dataset": dataset, "layer": layer}
        for measure in [*measures, thresholds["rank_measure"]]:
            row = trend_row(group, "weight_decay", measure, "<", alpha, MIN_LAMBDAS, **keys)
            if index == 1:
                row = relabel(row, Outcome.CONTROL, CONTROL)
            elif measure not in measures:
                row = relabel(row, Outcome.INFORMATION, "information only")
            details.append(row)
    return claim_record(
        "C1",
        "A hidden layer's distance to the matrices of rank K falls as the weight decay λ grows "
        f"({' and '.join(measures)}, scale-free), at stationary points.",
        f"Per (study, dataset, hidden layer ≥ 2) of a λ sweep, over counted runs: the mean over "
        f"seeds of Spearman ρ(λ, measure) for each of {', '.join(measures)}; pass if the "
        f"stratified permutation p (ρ < 0) ≤ α = {alpha:g} and the seeds' 95% interval (if "
        "there are 2 seeds or more) lies below 0, fail if the same holds above 0, else "
        f"inconclusive; with counted runs at fewer than {MIN_LAMBDAS} λ, or too few to reach "
        f"α, too few points (not deciding). Layer 1 is a control; "
        f"{thresholds['rank_measure']} is information only.",
        details,
        "<",
        "mean ρ(λ, distance)",
        0.0,
        run_count(rows[rows["counted"]]),
    )


def claim_c2(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C2: the within-class variability of hidden embeddings falls with λ."""
    alpha, measure = thresholds["alpha"], thresholds["variability_measure"]
    rows = sweeps(candidates(table, thresholds))
    rows = rows[rows["layer_index"] >= 2]
    informative = [m for m in ("tcv", "nc1", "cdnv") if m != measure and m in rows]
    details = []
    for (study, dataset, _, layer), group in rows.groupby(LAYER_KEYS, sort=True):
        keys = {"study": study, "dataset": dataset, "layer": layer}
        for column in [measure, *informative]:
            row = trend_row(group, "weight_decay", column, "<", alpha, MIN_LAMBDAS, **keys)
            if column != measure:
                row = relabel(row, Outcome.INFORMATION, "information only")
            details.append(row)
    return claim_record(
        "C2",
        f"The within-class variability ({measure}, scale-free) of the hidden embeddings, the "
        "inputs of layers 2..L, falls as λ grows. TCV would fall from the shrinking scale "
        "alone, and NC1 can rise when the class means collapse onto fewer directions; both are "
        "information only.",
        f"Per (study, dataset, layer ≥ 2) of a λ sweep, over counted runs: mean over seeds of "
        f"Spearman ρ(λ, {measure}); pass/fail/inconclusive as C1 (α = {alpha:g}).",
        details,
        "<",
        f"mean ρ(λ, {measure})",
        0.0,
        run_count(rows[rows["counted"]]),
    )


def claim_c3a(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C3(a), a check of the implementation: tail_K ≤ ‖E‖_F/(Nλ) + ‖R‖_F/λ on every row."""
    rows = finished(table)
    rows = rows[rows["weight_decay"] > 0]
    checked = rows[rows["bound_holds"].notna()]
    violated = checked[~checked["bound_holds"].astype(bool)]
    details = [
        {
            "study": r.study,
            "dataset": r.dataset,
            "weight_decay": r.weight_decay,
            "seed": r.seed,
            "layer": r.layer,
            "tail_K": r.tail_K,
            "bound": r.bound,
            "result": Check(Outcome.FAIL, "violation: a bug in the measure step"),
        }
        for r in violated.itertuples()
    ]
    if len(checked) == 0:
        verdict = Verdict.NOT_RUN
    else:
        verdict = Verdict.DOES_NOT_HOLD if len(violated) else Verdict.HOLDS
    statistic = (
        f"{len(checked)} rows checked (all finished runs, λ > 0), {len(violated)} violations"
    )
    if len(rows) > len(checked):
        statistic += f", {len(rows) - len(checked)} rows not evaluated"
    return Claim(
        "C3a",
        "The bound tail_K(W) ≤ ‖E‖_F/(Nλ) + ‖R‖_F/λ holds on every layer of every run with "
        "λ > 0. With E and R computed as they are it is an identity plus Eckart-Young: a check "
        "of the code's arithmetic, not evidence for the paper.",
        "Every finished row with λ > 0 and an evaluated bound satisfies it within round-off; "
        "holds iff no violation.",
        verdict,
        statistic,
        details,
        kind=Kind.CHECK,
        n=run_count(checked),
        value=float(len(violated)),
        low=None,
        high=None,
        line=0.0,
        measure="violations",
    )


def claim_c3b(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C3(b): at certified stationary points the bound says something: bound < ‖W‖_F."""
    rows = counted_runs(table, thresholds["min_train_acc"])
    rows = rows[hidden(rows)]
    details = []
    for (study, dataset), group in rows.groupby(["study", "dataset"], sort=True):
        ratio = group["bound"] / group["frobenius_norm"]
        runs = group[RUN_KEYS].astype(str).agg("/".join, axis=1)
        median, low, high = median_interval(ratio, runs)
        fitted = bound_slope_rows(group)
        on_e = log_log_fit(fitted["bound_e"], fitted["tail_K"])
        on_tcv = log_log_fit(fitted["tcv_over_wd"], fitted["tail_K"])
        details.append(
            {
                "study": study,
                "dataset": dataset,
                "runs": group[RUN_KEYS].drop_duplicates().shape[0],
                "n": len(group),
                "value": median,
                "low": low,
                "high": high,
                "below_norm": float((ratio < 1).mean()),
                "e_share": float((group["bound_e"] / group["bound"]).median()),
                "slope_on_e": on_e.slope,
                "slope_on_e_interval": f"[{fmt(on_e.low)}, {fmt(on_e.high)}]",
                "slope_on_tcv": on_tcv.slope,
                "slope_on_tcv_interval": f"[{fmt(on_tcv.low)}, {fmt(on_tcv.high)}]",
                "result": (
                    against_line(median, low, high, 1.0, "<", "median bound/‖W‖_F")
                    if math.isfinite(low)
                    else Check(Outcome.TOO_FEW, "too few points: fewer than 3 counted runs")
                ),
            }
        )
    return claim_record(
        "C3b",
        "At certified stationary points the bound is informative: ‖E‖_F/(Nλ) + ‖R‖_F/λ is "
        "below the trivial bound tail_K ≤ ‖W‖_F. Reported beside it: the share of rows below "
        "‖W‖_F, the E term's share of the bound, and the slopes of log tail_K on "
        "log(‖E‖_F/(Nλ)) and on log(TCV/λ) with 95% intervals (information).",
        "Per (study, dataset), over the hidden layers of counted runs: the median of "
        "bound/‖W‖_F with a 95% bootstrap interval resampling runs; pass if the interval lies "
        "below 1, fail if above 1, else inconclusive; with fewer than 3 counted runs, too few "
        "points (not deciding).",
        details,
        "<",
        "median bound/‖W‖_F",
        1.0,
        run_count(rows),
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
    """C4: at λ*, the largest λ that still trains, hidden layers are near rank K."""
    min_acc, max_tail = thresholds["min_train_acc"], thresholds["max_rel_tail"]
    all_rows = sweeps(finished(table))
    counted = counted_runs(all_rows, min_acc)
    # The grid's end counts every run, diverged too: a λ whose runs diverged does not train.
    grid_ends = table.groupby(["study", "dataset"])["weight_decay"].max()
    details, runs = [], 0
    for (study, dataset), group in all_rows.groupby(["study", "dataset"], sort=True):
        keys = {"study": study, "dataset": dataset}
        lambda_star = largest_training_lambda(group, min_acc)
        grid_end = float(grid_ends[study, dataset])
        at_star = counted[
            (counted["study"] == study)
            & (counted["dataset"] == dataset)
            & (counted["weight_decay"] == lambda_star)
        ]
        runs += run_count(at_star)
        layers = group.loc[hidden(group), ["layer_index", "layer"]].drop_duplicates()
        for index, layer in layers.sort_values("layer_index").itertuples(index=False):
            values = at_star.loc[at_star["layer"] == layer, "rel_tail_K"]
            mean, low, high, check = mean_check(values, max_tail, "<", "mean rel_tail_K")
            row = {
                **keys,
                "layer": layer,
                "weight_decay": lambda_star,
                "measure": "rel_tail_K",
                "runs": int(values.notna().sum()),
                "n": int(values.notna().sum()),
                "value": mean,
                "low": low,
                "high": high,
            }
            if not math.isfinite(lambda_star):
                result = Check(Outcome.INCONCLUSIVE, f"inconclusive: no λ > 0 reaches {min_acc:g}")
            elif lambda_star == grid_end:
                result = Check(
                    Outcome.INCONCLUSIVE,
                    "inconclusive: λ* is the grid's largest λ, so the largest λ that trains "
                    "was not found",
                )
            else:
                result = check  # too few points with fewer than 2 counted runs at λ*
            if index == 1:
                result = Check(Outcome.CONTROL, CONTROL)
            details.append({**row, "result": result})
    return claim_record(
        "C4",
        "At the largest λ that still trains (λ*: mean train accuracy ≥ "
        f"{min_acc:g}), every hidden layer is within a small tail of rank K "
        f"(mean tail_K/‖W‖_F ≤ {max_tail:g}).",
        "Per (study, dataset) λ sweep: λ* from all finished runs; per hidden layer ≥ 2, the "
        "mean of rel_tail_K over the counted runs at λ* with its 95% t-interval over seeds; "
        f"pass if the interval lies below {max_tail:g}, fail if above, else inconclusive "
        "(also when λ* is the grid's largest λ, where training never failed); with fewer than "
        "2 counted runs at λ*, too few points (not deciding). Layer 1 is a control.",
        details,
        "<",
        "mean rel_tail_K at λ*",
        max_tail,
        runs,
    )


def synthetic_studies(rows: pd.DataFrame) -> pd.DataFrame:
    """Synthetic rows (finite dataset_std) of the studies with ≥ 2 distinct spreads."""
    synthetic = rows[np.isfinite(rows["dataset_std"].astype(float))]
    spreads = synthetic.groupby("study")["dataset_std"].transform("nunique")
    return synthetic[spreads >= 2]


def claim_c5(table: pd.DataFrame, thresholds: dict) -> Claim:
    """C5: on synthetic data at fixed λ, a hidden layer's distance to rank K grows with the
    data's spread.
    """
    alpha, measures = thresholds["alpha"], thresholds["distance_measures"]
    rows = synthetic_studies(candidates(table, thresholds))
    rows = rows[hidden(rows)]
    details = []
    keys = ["study", "weight_decay", "layer_index", "layer"]
    for (study, wd, _, layer), group in rows.groupby(keys, sort=True):
        for measure in [*measures, thresholds["rank_measure"]]:
            row = trend_row(
                group,
                "dataset_std",
                measure,
                ">",
                alpha,
                2,
                study=study,
                weight_decay=wd,
                layer=layer,
            )
            if measure not in measures:
                row = relabel(row, Outcome.INFORMATION, "information only")
            details.append(row)
    return claim_record(
        "C5",
        "On synthetic data, at fixed λ > 0, a hidden layer's distance to rank K "
        f"({' and '.join(measures)}) grows with the data's within-class spread (dataset_std).",
        f"Per (study, λ > 0, hidden layer, including layer 1, whose input's variability is the "
        f"spread itself), over counted runs: mean over seeds of Spearman ρ(dataset_std, "
        f"measure); pass/fail/inconclusive/too few points as C1 with ρ > 0 (α = {alpha:g}); "
        "too few points with counted runs at fewer than 2 spreads.",
        details,
        ">",
        "mean ρ(spread, distance)",
        0.0,
        run_count(rows[rows["counted"]]),
    )


def claim_p(table: pd.DataFrame, thresholds: dict) -> Claim:
    """P: a layer's distance to rank K grows with the within-class variability of its input,
    across the hidden layers of a network at fixed λ, and across spreads at fixed layer.
    """
    alpha, measures = thresholds["alpha"], thresholds["distance_measures"]
    variability = thresholds["variability_measure"]
    rows = candidates(table, thresholds)
    rows = rows[hidden(rows)]
    details = []
    for (study, dataset, wd), group in rows.groupby(
        ["study", "dataset", "weight_decay"], sort=True
    ):
        for measure in measures:
            row = trend_row(
                group, variability, measure, ">", alpha, 2, across="layers",
                study=study, dataset=dataset, weight_decay=wd, variability=variability,
            )  # fmt: skip
            details.append(row)
        if "tcv_relative" in group and variability != "tcv_relative":
            row = trend_row(
                group, "tcv_relative", measures[0], ">", alpha, 2, across="layers",
                study=study, dataset=dataset, weight_decay=wd, variability="tcv_relative",
            )  # fmt: skip
            details.append(relabel(row, Outcome.INFORMATION, "information only"))
    synthetic = synthetic_studies(rows)
    for (study, wd, _, layer), group in synthetic.groupby(
        ["study", "weight_decay", "layer_index", "layer"], sort=True
    ):
        for measure in measures:
            row = trend_row(
                group, variability, measure, ">", alpha, 2, across="spreads",
                study=study, layer=layer, weight_decay=wd, variability=variability,
            )  # fmt: skip
            details.append(row)
    return claim_record(
        "P",
        "Proportionality, paper A's central statement: a layer's scale-free distance to rank K "
        f"({' and '.join(measures)}) is larger the larger the within-class variability "
        f"({variability}) of the embeddings entering it: across the hidden layers of one "
        "network at fixed λ, and across the synthetic spreads at a fixed layer and λ.",
        "Per (study, dataset, λ) across hidden layers (each run a replicate), and per (study, "
        f"λ, hidden layer) across spreads (each seed a replicate), over counted runs: mean "
        f"Spearman ρ({variability}, measure) over replicates; pass if the stratified "
        f"permutation p (ρ > 0) ≤ α = {alpha:g} and the replicates' 95% interval lies above "
        "0, fail if the same holds below 0, else inconclusive. tcv_relative (TCV over "
        "√(N·SS_total), a mean distance over an RMS distance) is information only.",
        details,
        ">",
        f"mean ρ({variability}, distance)",
        0.0,
        run_count(rows[rows["counted"]]),
    )


CLAIMS = [claim_c1, claim_c2, claim_c3a, claim_c3b, claim_c4, claim_c5, claim_p]


# ---------------------------------------------------------------- findings and exclusions


def findings(table: pd.DataFrame, thresholds: dict) -> list[dict]:
    """Neural-collapse findings reported beside the claims, with no verdict: per (study,
    dataset, layer ≥ 2) of a λ sweep, over counted runs, the trend in λ of NC1, CDNV and
    SS_W/SS_total, and the rank of the class means against K − 1 at the smallest and
    largest counted λ (Súkeník et al. 2024 predict NC1 can rise as the means lose rank).
    """
    rows = sweeps(candidates(table, thresholds))
    rows = rows[rows["counted"] & (rows["layer_index"] >= 2)]
    out = []
    for (study, dataset, _, layer), group in rows.groupby(LAYER_KEYS, sort=True):
        row = {"study": study, "dataset": dataset, "layer": layer}
        for column in ("nc1", "cdnv", "ss_ratio"):
            tr = trend(group["weight_decay"], group[column], group["seed"])
            row[f"rho_{column}"] = tr.rho
            row[f"rho_{column}_interval"] = f"[{fmt(tr.low)}, {fmt(tr.high)}]"
        if "means_rank" in group:
            by_wd = group.groupby("weight_decay")["means_rank"].mean()
            row["K-1"] = int(group["classes"].iloc[0]) - 1
            row["means_rank_smallest_lambda"] = float(by_wd.iloc[0])
            row["means_rank_largest_lambda"] = float(by_wd.iloc[-1])
        row["runs"] = run_count(group)
        out.append(row)
    return out


def not_counted_runs(table: pd.DataFrame, min_train_acc: float) -> list[str]:
    """One line per finished run that paper A's claims do not count, and why."""
    per_run = finished(table).groupby(RUN_KEYS, sort=True).first().reset_index()
    lines = []
    for r, certified in zip(per_run.itertuples(), is_certified(per_run), strict=True):
        if r.weight_decay == 0:
            why = "λ = 0 (no stationary point to certify)"
        elif not certified:
            why = f"not certified ({r.stop_reason}, residual {fmt(r.certified_rel_residual)})"
        elif r.train_acc < min_train_acc:
            why = f"train accuracy {r.train_acc:.3g} < {min_train_acc:g}"
        else:
            continue
        lines.append(f"{r.study}/{r.dataset} λ={r.weight_decay:g} seed {r.seed}: {why}")
    return lines
