"""Verdict on claims U1-U5 of paper B (docs/science.md) from the tidy utilization and compression
tables (one row per run × layer × energy, and per run × energy × method × stage).

All claims read the headline energy e (``utilization.energy``). U1-U4 are about networks
trained as usual, so they count the *reference runs*: finished runs with λ ≤
``u_reference_max_weight_decay``; larger λ are the rank-collapse regime, which U5 covers.

Thresholds, from the config's ``claims`` section (defaults in the schema), fixed before the
runs and never tuned:

- ``u_reference_max_weight_decay``: largest λ of a reference run (U1-U4).
- ``u1_min_svd_utilization``: U1, smallest mean plain-SVD utilization (over a run's layers)
  that counts as "weights look full rank".
- ``u2_max_mlu_ratio``: U2, largest MLU / plain-SVD MLU that counts as "much lower".
- ``u3_error_factor``: U3, every layer's relative output error on held-out data must be at
  most this factor times √(1 − e): on calibration data the output-side part of the error is at
  most √(1 − e) by the choice of k_T, and the input-side part the same for an isotropic W.
- ``u3_max_acc_drop``: U3, largest test-accuracy drop of the whole projected network.
- ``u4_max_acc_drop``: U4, largest test-accuracy drop after compressing and fine-tuning.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .report import fmt
from .statistics import MIN_LAMBDAS, RUN_KEYS, finished, spearman
from .verdicts import Check, Claim, Outcome, Verdict, passes, sign_check, tally, verdict_of


def at_energy(table: pd.DataFrame, energy: float) -> pd.DataFrame:
    """Finished rows at energy e (compared to 1e-9, as energies come from config floats)."""
    rows = finished(table)
    return rows[np.isclose(rows["energy"].astype(float), energy, rtol=0, atol=1e-9)]


def per_run(utilization: pd.DataFrame, energy: float) -> pd.DataFrame:
    """One row per finished run at energy e: MLU (mean utilization over its layers), plain-SVD
    MLU, the largest layer output error, and the projected network's error and accuracy.
    """
    rows = at_energy(utilization, energy)
    if rows.empty:
        return pd.DataFrame(columns=[*RUN_KEYS, "mlu", "svd_mlu"])
    grouped = rows.groupby(RUN_KEYS, sort=True)
    return grouped.agg(
        mlu=("utilization", "mean"),
        svd_mlu=("svd_utilization", "mean"),
        layers=("layer", "count"),
        max_layer_error=("rel_output_error", "max"),
        network_rel_error=("network_rel_error", "first"),
        network_test_acc=("network_test_acc", "first"),
        test_acc=("test_acc", "first"),
    ).reset_index()


def reference(runs: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    return runs[runs["weight_decay"] <= thresholds["u_reference_max_weight_decay"]]


def run_label(r) -> str:
    return f"{r.study}/{r.dataset} λ={r.weight_decay:g} seed {r.seed}"


def no_reference(claim_id: str, statement: str, thresholds: dict) -> Claim:
    limit = thresholds["u_reference_max_weight_decay"]
    return Claim(claim_id, statement, Verdict.NOT_RUN, f"no finished run with λ ≤ {limit:g}", [])


def claim_u1(utilization, compression, thresholds) -> Claim:
    """U1: in every reference run, the mean plain-SVD utilization ≥ u1_min_svd_utilization."""
    e, low = thresholds["utilization_energy"], thresholds["u1_min_svd_utilization"]
    statement = (
        f"Plain SVD sees weights that look full rank: at energy e = {e:g} the mean plain-SVD "
        f"utilization of a run's layers is at least {low:g} (runs with λ ≤ "
        f"{thresholds['u_reference_max_weight_decay']:g})."
    )
    runs = reference(per_run(utilization, e), thresholds)
    if runs.empty:
        return no_reference("U1", statement, thresholds)
    details = [
        {
            "run": run_label(r),
            "svd_mlu": r.svd_mlu,
            "counted": True,
            "result": passes(r.svd_mlu >= low, f"≥ {low:g}", f"fails: < {low:g}"),
        }
        for r in runs.itertuples()
    ]
    results = [d["result"] for d in details]
    statistic = (
        tally(results, f"plain-SVD MLU ≥ {low:g}", "runs")
        + f"; plain-SVD MLU {fmt(runs['svd_mlu'].min())} to {fmt(runs['svd_mlu'].max())}"
    )
    return Claim("U1", statement, verdict_of(results), statistic, details)


def claim_u2(utilization, compression, thresholds) -> Claim:
    """U2: in every reference run, MLU ≤ u2_max_mlu_ratio × plain-SVD MLU; MLU per model."""
    e, ratio = thresholds["utilization_energy"], thresholds["u2_max_mlu_ratio"]
    statement = (
        f"Data-driven utilization is much lower than plain SVD's: at e = {e:g}, MLU ≤ "
        f"{ratio:g} × plain-SVD MLU in every run with λ ≤ "
        f"{thresholds['u_reference_max_weight_decay']:g}. MLU is reported per model."
    )
    runs = reference(per_run(utilization, e), thresholds)
    if runs.empty:
        return no_reference("U2", statement, thresholds)
    details = []
    for r in runs.itertuples():
        share = r.mlu / r.svd_mlu if r.svd_mlu > 0 else math.nan
        ok = math.isfinite(share) and share <= ratio
        details.append(
            {
                "run": run_label(r),
                "mlu": r.mlu,
                "svd_mlu": r.svd_mlu,
                "ratio": share,
                "counted": True,
                "result": passes(ok, f"ratio ≤ {ratio:g}", f"fails: ratio > {ratio:g}"),
            }
        )
    results = [d["result"] for d in details]
    per_study = runs.groupby("study").agg(mlu=("mlu", "mean"), svd=("svd_mlu", "mean"))
    statistic = (
        tally(results, f"MLU / plain-SVD MLU ≤ {ratio:g}", "runs")
        + "; mean MLU (plain SVD) per study: "
        + ", ".join(f"{s} {r.mlu:.1%} ({r.svd:.1%})" for s, r in per_study.iterrows())
    )
    return Claim("U2", statement, verdict_of(results), statistic, details)


def claim_u3(utilization, compression, thresholds) -> Claim:
    """U3: every layer's held-out relative output error ≤ u3_error_factor · √(1 − e), and the
    projected network's test accuracy drop ≤ u3_max_acc_drop, in every reference run.
    """
    e = thresholds["utilization_energy"]
    factor, max_drop = thresholds["u3_error_factor"], thresholds["u3_max_acc_drop"]
    limit = factor * math.sqrt(1 - e)
    statement = (
        f"The projected network keeps the function on held-out data: at e = {e:g} every layer's "
        f"relative output error ‖W'x − Wx‖/‖Wx‖ is at most {factor:g}·√(1 − e) = {limit:.3g}, "
        f"and the network with every layer projected loses at most {max_drop:g} test accuracy."
    )
    runs = reference(per_run(utilization, e), thresholds)
    if runs.empty:
        return no_reference("U3", statement, thresholds)
    details = []
    for r in runs.itertuples():
        drop = r.test_acc - r.network_test_acc
        fails = []
        if not r.max_layer_error <= limit:
            fails.append(f"layer error > {limit:.3g}")
        if not drop <= max_drop:
            fails.append(f"accuracy drop > {max_drop:g}")
        details.append(
            {
                "run": run_label(r),
                "max_layer_error": r.max_layer_error,
                "network_rel_error": r.network_rel_error,
                "test_acc": r.test_acc,
                "projected_test_acc": r.network_test_acc,
                "counted": True,
                "result": passes(not fails, "within tolerance", "fails: " + ", ".join(fails)),
            }
        )
    results = [d["result"] for d in details]
    drops = runs["test_acc"] - runs["network_test_acc"]
    statistic = (
        tally(results, "within tolerance", "runs")
        + f"; largest layer error {fmt(runs['max_layer_error'].max())} (limit {limit:.3g})"
        + f"; network logit error {fmt(runs['network_rel_error'].min())} to "
        + f"{fmt(runs['network_rel_error'].max())}; accuracy drop {fmt(drops.min())} to "
        + f"{fmt(drops.max())}"
    )
    return Claim("U3", statement, verdict_of(results), statistic, details)


def compression_energy(compression: pd.DataFrame, energy: float) -> float:
    """The headline energy if runs were compressed at it, else the largest compression energy."""
    if "energy" not in compression:
        return math.nan
    energies = sorted(finished(compression)["energy"].dropna().unique())
    if not energies:
        return math.nan
    close = [x for x in energies if abs(x - energy) < 1e-9]
    return float(close[0] if close else energies[-1])


def claim_u4(utilization, compression, thresholds) -> Claim:
    """U4: in every reference run with a factorized layer, at the compression energy, the
    data-driven model after fine-tuning loses at most u4_max_acc_drop test accuracy, and its
    accuracy is at least plain SVD's at the same ranks, before and after fine-tuning.
    """
    max_drop = thresholds["u4_max_acc_drop"]
    e = compression_energy(compression, thresholds["utilization_energy"])
    statement = (
        "Compressing every layer to its utilized rank (where that saves parameters) and "
        f"fine-tuning costs at most {max_drop:g} test accuracy, and the data-driven model is at "
        "least as accurate as plain truncated SVD at the same ranks, before and after the same "
        f"fine-tuning (runs with λ ≤ {thresholds['u_reference_max_weight_decay']:g}"
        + (f", e = {e:g})." if math.isfinite(e) else ").")
    )
    if not math.isfinite(e):
        return Claim("U4", statement, Verdict.NOT_RUN, "no compression results", [])
    rows = at_energy(compression, e)
    rows = rows[rows["weight_decay"] <= thresholds["u_reference_max_weight_decay"]]
    if rows.empty:
        return no_reference("U4", statement, thresholds)
    details = []
    for keys, group in rows.groupby(RUN_KEYS, sort=True):
        acc = group.set_index(["method", "stage"])["test_acc"]
        first = group.iloc[0]
        counted = bool(first["layers_factorized"] > 0)
        drop = float(first["original_test_acc"] - acc["data_driven", "after"])
        fails = []
        if not drop <= max_drop:
            fails.append(f"drop > {max_drop:g}")
        for stage in ("before", "after"):
            if acc["data_driven", stage] < acc["svd", stage]:
                fails.append(f"below plain SVD {stage} fine-tuning")
        details.append(
            {
                "run": run_label(pd.Series(dict(zip(RUN_KEYS, keys, strict=True)))),
                "param_fraction": float(first["param_fraction"]),
                "test_acc": float(first["original_test_acc"]),
                "data_driven_before": float(acc["data_driven", "before"]),
                "data_driven_after": float(acc["data_driven", "after"]),
                "svd_before": float(acc["svd", "before"]),
                "svd_after": float(acc["svd", "after"]),
                "drop_after": drop,
                "counted": counted,
                "result": (
                    passes(not fails, "small drop, ≥ plain SVD", "fails: " + ", ".join(fails))
                    if counted
                    else Check(
                        Outcome.NOT_COUNTED,
                        "not counted: no layer saves parameters at its utilized rank",
                    )
                ),
            }
        )
    counted = [d for d in details if d["counted"]]
    results = [d["result"] for d in counted]
    if counted:
        statistic = (
            tally(results, "small drop and ≥ plain SVD", "runs")
            + f" at e = {e:g}; parameters kept "
            + f"{fmt(min(d['param_fraction'] for d in counted))} to "
            + f"{fmt(max(d['param_fraction'] for d in counted))}; accuracy drop after "
            + f"fine-tuning {fmt(min(d['drop_after'] for d in counted))} to "
            + f"{fmt(max(d['drop_after'] for d in counted))}; before fine-tuning data-driven − "
            + "plain SVD accuracy "
            + f"{fmt(min(d['data_driven_before'] - d['svd_before'] for d in counted))} to "
            + f"{fmt(max(d['data_driven_before'] - d['svd_before'] for d in counted))}"
        )
    else:
        statistic = "no run has a layer whose utilized rank saves parameters"
    return Claim("U4", statement, verdict_of(results), statistic, details)


def claim_u5(utilization, compression, thresholds) -> Claim:
    """U5: per (study, dataset) with ≥ 3 λ values, Spearman ρ(λ, MLU) < 0, seeds pooled."""
    e = thresholds["utilization_energy"]
    runs = per_run(utilization, e)
    details = []
    for (study, dataset), group in runs.groupby(["study", "dataset"], sort=True):
        n_lambdas = int(group["weight_decay"].nunique())
        counted = n_lambdas >= MIN_LAMBDAS
        rho = spearman(group["weight_decay"], group["mlu"])
        details.append(
            {
                "study": study,
                "dataset": dataset,
                "n": len(group),
                "n_lambdas": n_lambdas,
                "rho": rho,
                "rho_svd": spearman(group["weight_decay"], group["svd_mlu"]),
                "mlu_smallest_lambda": float(group.loc[group["weight_decay"].idxmin(), "mlu"]),
                "mlu_largest_lambda": float(group.loc[group["weight_decay"].idxmax(), "mlu"]),
                "counted": counted,
                "result": sign_check(rho, "< 0")
                if counted
                else Check(
                    Outcome.NOT_COUNTED, f"not counted: {n_lambdas} λ values < {MIN_LAMBDAS}"
                ),
            }
        )
    results = [d["result"] for d in details]
    if any(c.counted for c in results):
        statistic = (
            tally(results, "ρ(λ, MLU) < 0")
            + "; "
            + "; ".join(
                f"{d['study']}/{d['dataset']} ρ = {fmt(d['rho'])} (n={d['n']}), MLU "
                f"{d['mlu_smallest_lambda']:.1%} → {d['mlu_largest_lambda']:.1%}, plain-SVD ρ = "
                f"{fmt(d['rho_svd'])}"
                for d in details
                if d["counted"]
            )
        )
    else:
        statistic = f"no (study, dataset) with ≥ {MIN_LAMBDAS} λ values"
    return Claim(
        "U5",
        f"Utilization falls as weight decay grows (link between the papers): Spearman ρ between "
        f"λ and MLU at e = {e:g} is negative for every study and dataset with ≥ {MIN_LAMBDAS} λ.",
        verdict_of(results),
        statistic,
        details,
    )


CLAIMS = [claim_u1, claim_u2, claim_u3, claim_u4, claim_u5]
