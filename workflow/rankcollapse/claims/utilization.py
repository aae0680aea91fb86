"""Claims U1-U6 and UI of paper B (Garg et al. 2024, docs/science.md §7), decided from the tidy
utilization and compression tables (one row per run × layer × energy, and per run × energy ×
method × stage) by pre-registered rules, each with its n and a 95% interval.

All claims read the headline energy e (``utilization.energy``). U1-U4 are about networks
trained as usual, so they count the *reference runs*: finished runs with λ ≤
``u_reference_max_weight_decay``. Paper B assumes no stationary point, so certification does
not filter them. They are grouped per study (one model each); a study's reference runs are its
replicates, and each study's mean over them, with its t-interval across runs, is judged
against the claim's line (:func:`.verdicts.mean_check`): pass when the whole interval is on
the claimed side, fail when it is wholly on the other, else inconclusive (also with fewer than
2 runs). Beside U1 and U2, never scored, the same statistic of the runs' initial weights (the
``init_*`` columns: the untrained network), which shows what the claim says before training.
U5 (larger λ, the link with paper A) is a trend test. UI quotes the paper's ImageNet figures,
which this pipeline cannot reach. U1-U5 and UI read supervised runs only; U6 compares
self-supervised pre-training with supervised training of the same network, run for run.

Thresholds, from the config's ``claims`` section (defaults in the schema), fixed before the
runs and never tuned:

- ``u_reference_max_weight_decay``: largest λ of a reference run (U1-U4).
- ``u1_min_svd_utilization``: U1, the line the mean plain-SVD MLU must lie above ("weights
  look full rank").
- ``u2_max_mlu_ratio``: U2, the line the mean MLU / plain-SVD MLU must lie below ("much
  lower").
- ``u3_error_factor``: U3(a), the largest layer output error on held-out data must lie below
  this factor times √(1 − e): on calibration data the output-side part of the error is at most
  √(1 − e) by the choice of k_T, and the input-side part the same for an isotropic W.
- ``u3_max_acc_drop``: U3(b), the line for the test-accuracy drop of the projected network.
- ``u4_max_acc_drop``: U4(a), the line for the test-accuracy drop after compressing and
  fine-tuning.
- ``alpha``: U5, the one-sided significance level of the trend test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .report import fmt
from .statistics import RUN_KEYS, finished, t_interval, trend
from .verdicts import (
    Check,
    Claim,
    Outcome,
    Verdict,
    headline,
    mean_check,
    tally,
    trend_check,
    verdict_of,
)

MIN_SWEEP_LAMBDAS = 3  # fewest distinct λ of a sweep (U5)
DECISION = (
    "A study with fewer than 2 reference runs has too few points (no interval) and does not "
    "decide. Holds iff every study tested passes; does not hold if one fails; else (or when no "
    "study has 2 runs) inconclusive."
)
UNTRAINED = "untrained (initial weights)"
TRAINED = "trained"


# ------------------------------------------------------------------------------ the tables
def at_energy(table: pd.DataFrame, energy: float) -> pd.DataFrame:
    """Finished rows at energy e (compared to 1e-9, as energies come from config floats)."""
    if table is None or "energy" not in table:
        return pd.DataFrame(columns=[*RUN_KEYS, "status", "energy"])
    rows = finished(table)
    return rows[np.isclose(rows["energy"].astype(float), energy, rtol=0, atol=1e-9)]


def per_run(utilization: pd.DataFrame | None, energy: float) -> pd.DataFrame:
    """One row per finished run at energy e: MLU (mean utilization over its layers), plain-SVD
    MLU, the same two of its initial weights (NaN in tables without them), the largest layer
    output error, the projected network's error and accuracy, and the test set's size.
    """
    rows = at_energy(utilization, energy).copy()
    for column in ("init_utilization", "init_svd_utilization", "test_samples", "finetune_test_acc"):
        if column not in rows:
            rows[column] = math.nan
    if "kind" not in rows:
        rows["kind"] = ""
    columns = {
        "mlu": ("utilization", "mean"),
        "svd_mlu": ("svd_utilization", "mean"),
        "init_mlu": ("init_utilization", "mean"),
        "init_svd_mlu": ("init_svd_utilization", "mean"),
        "max_layer_error": ("rel_output_error", "max"),
        "network_test_acc": ("network_test_acc", "first"),
        "test_acc": ("test_acc", "first"),
        "test_samples": ("test_samples", "first"),
        "finetune_test_acc": ("finetune_test_acc", "first"),
        "vit": ("kind", lambda k: bool(k.eq("qkv").any())),
    }
    if rows.empty:
        return pd.DataFrame(columns=[*RUN_KEYS, *columns])
    return rows.groupby(RUN_KEYS, sort=True).agg(**columns).reset_index()


def reference(runs: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """The reference runs: λ ≤ u_reference_max_weight_decay (finished; certified or not)."""
    return runs[runs["weight_decay"] <= thresholds["u_reference_max_weight_decay"]]


def reference_text(thresholds: dict) -> str:
    limit = thresholds["u_reference_max_weight_decay"]
    return (
        f"Reference runs: finished runs with λ ≤ {limit:g} (networks trained as usual); paper B "
        "assumes no stationary point, so they count whether or not certified stationary. Per "
        "study (one model each; its reference runs are the replicates)"
    )


def no_reference(claim_id: str, statement: str, rule: str, thresholds: dict) -> Claim:
    limit = thresholds["u_reference_max_weight_decay"]
    return Claim(
        claim_id, statement, rule, Verdict.NOT_RUN, f"no finished run with λ ≤ {limit:g}", []
    )


def percent(value) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.1%}"


def interval_text(value, low, high, digits: str = ".3g") -> str:
    """The text "v [low, high]", or "v (no interval)" with fewer than 2 runs."""
    if value is None or not math.isfinite(value):
        return "—"
    text = f"{value:{digits}}"
    if low is None or not math.isfinite(low):
        return text + " (no interval)"
    return text + f" [{low:{digits}}, {high:{digits}}]"


# ------------------------------------------------------------------------- decision rules
def initial_networks(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct initial network among ``runs``: runs of one dataset and seed start
    from the same weights, so the untrained baseline's replicates are the (dataset, seed) pairs.
    """
    return runs.drop_duplicates(["dataset", "seed"])


def beside(values, line: float, what: str) -> tuple[float, float, float, Check]:
    """The same statistic of the untrained networks, as a control row, never scored."""
    mean, low, high = t_interval(values)
    if not math.isfinite(mean):
        return mean, low, high, Check(Outcome.CONTROL, "control: no initial weights measured")
    side = "above" if mean > line else "below" if mean < line else "at"
    note = f"control, never scored: the untrained {what} is {side} {line:g}"
    return mean, low, high, Check(Outcome.CONTROL, note)


def automatic(check: Check, untrained: float, line: float, want: str) -> Check:
    """A passing check whose untrained baseline is on the claimed side of the line too: the
    note says the claim is then nearly automatic (training is not what makes it pass).
    """
    same_side = untrained > line if want == ">" else untrained < line
    if check.outcome is not Outcome.PASS or not same_side:
        return check
    note = (
        f"{check.note}; the untrained baseline ({untrained:.3g}) is "
        f"{'above' if want == '>' else 'below'} {line:g} too, so this is nearly automatic"
    )
    return Check(check.outcome, note)


def runs_counted(details: list[dict]) -> int:
    """The runs a claim's verdict rests on: those of the studies with a counted trained row."""
    tested = {
        d["study"]: d["n"]
        for d in details
        if d["result"].counted and d.get("networks", TRAINED) == TRAINED
    }
    return int(sum(tested.values()))


def study_row(study: str, group: pd.DataFrame, networks: str | None, stats: tuple, **extra) -> dict:
    """A study's detail row: its datasets, which networks (trained or untrained; None where
    only trained ones enter), n, the extra columns, the statistic with its interval, the check.
    """
    value, low, high, check = stats
    return {
        "study": study,
        "datasets": ", ".join(sorted(map(str, group["dataset"].unique()))),
        **({"networks": networks} if networks else {}),
        "n": len(group),
        **extra,
        "value": value,
        "low": low,
        "high": high,
        "result": check,
    }


def decided(claim_id, statement, rule, statistic, details, measure, n, want=None, line=None):
    """A claim on ``n`` runs decided by :func:`.verdicts.verdict_of` over ``details``, headed
    by :func:`.verdicts.headline`: against ``line`` on the ``want`` side or, where they are
    None, against each row's own line and side.
    """
    top = headline(details, want)
    return Claim(
        claim_id,
        statement,
        rule,
        verdict_of([d["result"] for d in details]),
        statistic,
        details,
        n=n,
        measure=measure,
        value=None if top is None else top["value"],
        low=None if top is None else top["low"],
        high=None if top is None else top["high"],
        line=line if line is not None or top is None else top["line"],
    )


# ---------------------------------------------------------------------------------- U1, U2
def trained_and_untrained(
    claim_id, statement, rule, runs, column, init_column, line, want, what, mlus=False
) -> Claim:
    """U1 and U2: per study, the mean of ``column`` over the reference runs judged against
    ``line`` (:func:`.verdicts.mean_check`, claimed side ``want``), the untrained networks'
    mean of ``init_column`` beside it as a control (:func:`automatic` when it passes too);
    ``mlus`` adds both rows' mean MLU and plain-SVD MLU.
    """
    details = []
    for study, group in runs.groupby("study", sort=True):
        initial = initial_networks(group)
        value, low, high, check = mean_check(group[column], line, want, what)
        untrained = beside(initial[init_column], line, what)
        check = automatic(check, untrained[0], line, want)
        columns = ("mlu", "svd_mlu") if mlus else ()
        trained_mlus = {c: group[c].mean() for c in columns}
        details.append(
            study_row(study, group, TRAINED, (value, low, high, check), line=line, **trained_mlus)
        )
        initial_mlus = {c: initial[f"init_{c}"].mean() for c in columns}
        details.append(study_row(study, initial, UNTRAINED, untrained, line=line, **initial_mlus))
    pairs = []
    for t, u in zip(details[::2], details[1::2], strict=True):
        text = (
            f"{t['study']} {interval_text(t['value'], t['low'], t['high'])} "
            f"({interval_text(u['value'], u['low'], u['high'])}), n = {t['n']}"
        )
        if mlus:
            text += (
                f"; MLU {percent(t['mlu'])}, {percent(t['svd_mlu'])} (untrained "
                f"{percent(u['mlu'])}, {percent(u['svd_mlu'])})"
            )
        pairs.append(text)
    n = runs_counted(details)
    statistic = (
        f"{tally([d['result'] for d in details], 'studies')}; n = {n} of {len(runs)} reference "
        f"runs in studies tested; mean {what} [95% interval] per study, trained (untrained)"
        f"{'; mean MLU, plain-SVD MLU' if mlus else ''}: " + "; ".join(pairs)
    )
    return decided(claim_id, statement, rule, statistic, details, f"mean {what}", n, want, line)


def claim_u1(utilization, compression, thresholds) -> Claim:
    """U1: per study, the mean plain-SVD MLU of the reference runs, wholly above
    u1_min_svd_utilization; the untrained baseline beside.
    """
    e, line = thresholds["utilization_energy"], thresholds["u1_min_svd_utilization"]
    statement = (
        "Trained weights look full rank to plain SVD: the rank whose truncation keeps a fraction "
        f"e = {e:g} of ‖W‖_F² is a large share of min(d_in, d_out) (paper B's motivation for a "
        "data-driven rank)."
    )
    rule = (
        f"{reference_text(thresholds)}: the mean over runs of the plain-SVD MLU at e = {e:g} "
        f"(mean over a run's measured layers of svd_rank / min(d_in, d_out)), with its 95% "
        f"t-interval across runs. A study passes if the whole interval is above {line:g}, fails "
        f"if it is wholly below, and is inconclusive if it straddles the line. {DECISION} "
        "Beside it, never scored: the same statistic of the runs' initial weights (untrained "
        "networks); when it passes too, U1 is nearly automatic (a random matrix looks full "
        "rank)."
    )
    runs = reference(per_run(utilization, e), thresholds)
    if runs.empty:
        return no_reference("U1", statement, rule, thresholds)
    return trained_and_untrained(
        "U1", statement, rule, runs, "svd_mlu", "init_svd_mlu", line, ">", "plain-SVD MLU"
    )


def claim_u2(utilization, compression, thresholds) -> Claim:
    """U2: per study, the mean MLU / plain-SVD MLU of the reference runs, wholly below
    u2_max_mlu_ratio; the untrained baseline's ratio beside.
    """
    e, line = thresholds["utilization_energy"], thresholds["u2_max_mlu_ratio"]
    statement = (
        "The data-driven utilized rank is much lower than plain SVD's: restricted to the "
        "subspaces its inputs and outputs occupy, a layer uses a small part of its rank (MLU "
        "reported per model)."
    )
    rule = (
        f"{reference_text(thresholds)}: the mean over runs of MLU / plain-SVD MLU at e = {e:g} "
        f"(one ratio per run), with its 95% t-interval across runs. A study passes if the "
        f"whole interval is below {line:g}, fails if it is wholly above, and is inconclusive "
        f"if it straddles the line. {DECISION} Beside it, never scored: the same ratio of the "
        "runs' initial weights (untrained networks), to separate what training does from what "
        "the data's subspaces alone do."
    )
    runs = reference(per_run(utilization, e), thresholds)
    if runs.empty:
        return no_reference("U2", statement, rule, thresholds)
    runs = runs.assign(
        ratio=runs["mlu"] / runs["svd_mlu"].where(runs["svd_mlu"] > 0),
        init_ratio=runs["init_mlu"] / runs["init_svd_mlu"].where(runs["init_svd_mlu"] > 0),
    )
    return trained_and_untrained(
        "U2", statement, rule, runs, "ratio", "init_ratio", line, "<", "MLU / plain-SVD MLU", True
    )


# ---------------------------------------------------------------------------------- U3, U4
def part_rows(study, group, parts, image_columns=(), **extra) -> list[dict]:
    """A study's detail rows of a multi-part claim, one per (part, column, line, want): the
    mean of ``column`` over ``group`` judged against the part's own line
    (:func:`.verdicts.mean_check`); each row carries its line, claimed side, the ``extra``
    columns and, for ``image_columns``, the mean in test images.
    """
    return [
        study_row(
            study,
            group,
            None,
            mean_check(group[column], line, want, part[4:]),
            part=part,
            line=line,
            pass_if=want,
            **extra,
            test_images=images(group, column if column in image_columns else None),
        )
        for part, column, line, want in parts
    ]


def claim_u3(utilization, compression, thresholds) -> Claim:
    """U3: per study, (a) the mean largest layer output error below u3_error_factor·√(1 − e)
    and (b) the mean accuracy drop of the projected network below u3_max_acc_drop.
    """
    e = thresholds["utilization_energy"]
    factor, max_drop = thresholds["u3_error_factor"], thresholds["u3_max_acc_drop"]
    limit = factor * math.sqrt(1 - e)
    statement = (
        "Projecting every layer onto its utilized subspaces keeps the network's function on "
        "held-out data: each layer's relative output error ‖W'X − WX‖_F/‖WX‖_F stays of the "
        "order √(1 − e), and the network with every layer projected loses little test accuracy."
    )
    rule = (
        f"{reference_text(thresholds)}, at e = {e:g}, two parts, each a mean over runs with its "
        f"95% t-interval across runs: (a) the run's largest layer output error on the test set, "
        f"against {factor:g}·√(1 − e) = {limit:.3g}; (b) the run's test-accuracy drop when every "
        f"layer is projected at once, against {max_drop:g}. A part passes if its whole interval "
        "is below its line, fails if wholly above, else is inconclusive; a study passes iff "
        f"both parts pass and fails if either fails. {DECISION}"
    )
    runs = reference(per_run(utilization, e), thresholds)
    if runs.empty:
        return no_reference("U3", statement, rule, thresholds)
    runs = runs.assign(drop=runs["test_acc"] - runs["network_test_acc"])
    parts = (
        ("(a) largest layer output error", "max_layer_error", limit, "<"),
        ("(b) projected network's accuracy drop", "drop", max_drop, "<"),
    )
    details = [
        row
        for study, group in runs.groupby("study", sort=True)
        for row in part_rows(study, group, parts, image_columns=("drop",))
    ]
    checks, n = [d["result"] for d in details], runs_counted(details)
    statistic = (
        f"{tally(checks, 'study parts')}; n = {n} of {len(runs)} reference runs in studies "
        "tested; mean [95% interval] per study: "
        + "; ".join(
            f"{d['study']} {d['part']} {interval_text(d['value'], d['low'], d['high'])} "
            f"(line {d['line']:.3g}, n = {d['n']})"
            for d in details
        )
    )
    measure = "mean largest layer error; mean accuracy drop"
    return decided("U3", statement, rule, statistic, details, measure, n)


# ------------------------------------------------------------------------------------- U4
def compression_energy(compression: pd.DataFrame | None, energy: float) -> float:
    """The headline energy if runs were compressed at it, else the largest compression energy."""
    if compression is None or "energy" not in compression:
        return math.nan
    energies = sorted(finished(compression)["energy"].dropna().unique())
    if not energies:
        return math.nan
    close = [x for x in energies if abs(x - energy) < 1e-9]
    return float(close[0] if close else energies[-1])


def images(runs: pd.DataFrame, column: str | None) -> str:
    """A mean accuracy difference in test images (difference × the run's test-set size, one
    image = 1/n_test), with its t-interval; "" when a run's test-set size is unknown.
    """
    if column is None or "test_samples" not in runs:
        return ""
    n_test = runs["test_samples"].astype(float)
    if runs.empty or not np.isfinite(n_test).all():
        return ""
    mean, low, high = t_interval(runs[column] * n_test)
    sizes = "/".join(f"{s:g}" for s in sorted(n_test.unique()))
    return f"{interval_text(mean, low, high, digits='+.1f')} of {sizes}"


def compression_runs(compression, utilization, e: float, thresholds: dict) -> pd.DataFrame:
    """One row per finished reference run compressed at energy e (fixed energies only): the
    parameter fraction, layers factorized, the original accuracy, both methods' accuracy before
    and after fine-tuning, and the test set's size (from the utilization table).
    """
    rows = at_energy(compression, e)
    rows = rows[rows["weight_decay"] <= thresholds["u_reference_max_weight_decay"]]
    if rows.empty:
        return pd.DataFrame()
    accuracy = rows.pivot_table(index=RUN_KEYS, columns=["method", "stage"], values="test_acc")
    accuracy.columns = [f"{method}_{stage}" for method, stage in accuracy.columns]
    # A method or stage missing from the table leaves NaN (too few points), not a KeyError.
    expected = [f"{m}_{s}" for m in ("data_driven", "svd") for s in ("before", "after")]
    accuracy = accuracy.reindex(columns=expected)
    first = rows[rows["method"] == "data_driven"].groupby(RUN_KEYS)
    runs = first.agg(
        param_fraction=("param_fraction", "first"),
        layers_factorized=("layers_factorized", "first"),
        original_test_acc=("original_test_acc", "first"),
    ).join(accuracy)
    sizes = per_run(utilization, thresholds["utilization_energy"])
    if not sizes.empty:
        runs = runs.join(sizes.set_index(RUN_KEYS)["test_samples"])
    runs = runs.reset_index()
    return runs.assign(
        drop=runs["original_test_acc"] - runs["data_driven_after"],
        gain_before=runs["data_driven_before"] - runs["svd_before"],
        gain_after=runs["data_driven_after"] - runs["svd_after"],
    )


def claim_u4(utilization, compression, thresholds) -> Claim:
    """U4: per study at the compression energy, over reference runs with a factorized layer,
    (a) the mean accuracy drop after fine-tuning below u4_max_acc_drop, (b) the mean
    data-driven − plain-SVD accuracy above 0 before and after fine-tuning.
    """
    max_drop = thresholds["u4_max_acc_drop"]
    e = compression_energy(compression, thresholds["utilization_energy"])
    statement = (
        "Compressing every layer to its utilized rank (two factors of inner width r, where that "
        "saves parameters) and fine-tuning costs little test accuracy, and the data-driven "
        "factors are more accurate than plain truncated SVD at the same ranks, before and after "
        "the same fine-tuning."
    )
    energy_text = f"e = {e:g}" if math.isfinite(e) else "the compression energy"
    rule = (
        f"{reference_text(thresholds)}, at {energy_text} (the headline energy if compressed at "
        "it, else the largest compression energy; searched energies do not enter), over the "
        "runs with at least one factorized layer (others are not applicable), three parts, "
        "each a mean over runs with its 95% t-interval across runs: (a) the data-driven model's "
        f"test-accuracy drop after fine-tuning, passing if the whole interval is below "
        f"{max_drop:g} and failing if wholly above; (b) data-driven − plain-SVD test accuracy "
        "before and (c) after fine-tuning, passing if the whole interval is above 0 and failing "
        "if wholly below; otherwise a part is inconclusive. A study passes iff every part "
        f"passes and fails if one fails. {DECISION} Differences are also given in test images "
        "(× the test set's size), to show when a handful of images decides."
    )
    if not math.isfinite(e):
        return Claim("U4", statement, rule, Verdict.NOT_RUN, "no compression results", [])
    runs = compression_runs(compression, utilization, e, thresholds)
    if runs.empty:
        return no_reference("U4", statement, rule, thresholds)
    counted = runs[runs["layers_factorized"] > 0]
    parts = (
        ("(a) accuracy drop after fine-tuning", "drop", max_drop, "<"),
        ("(b) data-driven − plain SVD, before fine-tuning", "gain_before", 0.0, ">"),
        ("(c) data-driven − plain SVD, after fine-tuning", "gain_after", 0.0, ">"),
    )
    image_columns = [column for _, column, _, _ in parts]  # every part is an accuracy
    not_applicable = Check(
        Outcome.NOT_APPLICABLE, "not applicable: no layer saves parameters at its utilized rank"
    )
    details = []
    for study, group in runs.groupby("study", sort=True):
        usable = group[group["layers_factorized"] > 0]
        if usable.empty:
            empty = dict(part="", line=None, pass_if="", param_fraction=None, test_images="")
            details.append(study_row(study, group, None, (None,) * 3 + (not_applicable,), **empty))
            continue
        fraction = usable["param_fraction"].mean()
        details += part_rows(study, usable, parts, image_columns, param_fraction=fraction)
    checks = [d["result"] for d in details]
    n = runs_counted(details)
    if len(counted):
        statistic = (
            f"{tally(checks, 'study parts')} at e = {e:g}; n = {n} of {len(counted)} reference "
            "runs with a factorized layer in studies tested; mean [95% interval] per study (in "
            "test images): "
            + "; ".join(
                f"{d['study']} {d['part']} {interval_text(d['value'], d['low'], d['high'])}"
                + (f" ({d['test_images']})" if d["test_images"] else " (accuracy only)")
                + f", parameters kept {percent(d['param_fraction'])}, n = {d['n']}"
                for d in details
                if d["result"].outcome is not Outcome.NOT_APPLICABLE
            )
        )
    else:
        statistic = "no reference run has a layer whose utilized rank saves parameters"
    measure = "mean accuracy drop; mean data-driven − plain-SVD accuracy"
    return decided("U4", statement, rule, statistic, details, measure, n)


# ------------------------------------------------------------------------------------- U5
def claim_u5(utilization, compression, thresholds) -> Claim:
    """U5: per (study, dataset) with ≥ 3 λ, MLU falls with λ (trend within seeds, permutation
    p ≤ alpha); the plain-SVD trend beside for information.
    """
    e, alpha = thresholds["utilization_energy"], thresholds["alpha"]
    statement = (
        "Utilization falls as weight decay grows: the link between the papers (weight decay "
        "drives the rank of a layer down; paper B's utilized rank should follow)."
    )
    rule = (
        f"Per (study, dataset) with finished runs at ≥ {MIN_SWEEP_LAMBDAS} values of λ (all λ, 0 "
        "included; paper B assumes no stationary point, so certification does not filter), "
        f"every run counted: the Spearman ρ of MLU at e = {e:g} on λ within each seed, averaged "
        "over seeds, with a one-sided permutation p-value (MLU permuted within seeds) and a 95% "
        "t-interval across seeds (with ≥ 2 seeds). A group passes if p(ρ < 0) ≤ "
        f"α = {alpha:g} and the interval (if any) is below 0, fails if the same holds for "
        "ρ > 0, has too few points when no arrangement of its points can reach p ≤ α (it does "
        "not decide), else is inconclusive. Holds iff every group tested passes; does not hold "
        "if one fails; else inconclusive. A study with fewer λ is not a sweep (not "
        "applicable). The same trend of the plain-SVD MLU is reported for information."
    )
    runs = per_run(utilization, e)
    details = []
    for (study, dataset), group in runs.groupby(["study", "dataset"], sort=True):
        n_lambdas = int(group["weight_decay"].nunique())
        row = {
            "study": study,
            "dataset": dataset,
            "n": len(group),
            "n_lambdas": n_lambdas,
            "seeds": int(group["seed"].nunique()),
            # Means over the seeds at the grid's ends.
            "mlu_smallest_lambda": group.groupby("weight_decay")["mlu"].mean().iloc[0],
            "mlu_largest_lambda": group.groupby("weight_decay")["mlu"].mean().iloc[-1],
            "untrained_mlu": initial_networks(group)["init_mlu"].mean(),
        }
        if n_lambdas < MIN_SWEEP_LAMBDAS:
            note = f"not applicable: {n_lambdas} value(s) of λ, not a sweep"
            details.append(
                {
                    **row,
                    "value": None,
                    "low": None,
                    "high": None,
                    "p": None,
                    "svd_rho": None,
                    "svd_p": None,
                    "result": Check(Outcome.NOT_APPLICABLE, note),
                }
            )
            continue
        tr = trend(group["weight_decay"], group["mlu"], group["seed"])
        svd = trend(group["weight_decay"], group["svd_mlu"], group["seed"])
        details.append(
            {
                **row,
                "value": tr.rho,
                "low": tr.low,
                "high": tr.high,
                "p": tr.p("<"),
                "svd_rho": svd.rho,
                "svd_p": svd.p("<"),
                "result": trend_check(tr, "<", alpha, "ρ(λ, MLU)"),
            }
        )
    checks = [d["result"] for d in details]
    counted = [d for d in details if d["result"].counted]
    n = int(sum(d["n"] for d in counted))
    if counted:
        statistic = (
            f"{tally(checks, 'groups')}; n = {n} runs; per group mean ρ(λ, MLU) [95% interval "
            "across seeds], p(ρ < 0): "
            + "; ".join(
                f"{d['study']}/{d['dataset']} ρ = {interval_text(d['value'], d['low'], d['high'])}"
                f", p = {d['p']:.2g} (n = {d['n']}, {d['seeds']} seed(s)), MLU "
                f"{percent(d['mlu_smallest_lambda'])} → {percent(d['mlu_largest_lambda'])} "
                f"(untrained {percent(d['untrained_mlu'])}); plain-SVD ρ = {fmt(d['svd_rho'])}"
                for d in counted
            )
        )
    else:
        statistic = f"no (study, dataset) with ≥ {MIN_SWEEP_LAMBDAS} values of λ"
    measure = "mean Spearman ρ(λ, MLU) within seeds"
    return decided("U5", statement, rule, statistic, details, measure, n, "<", 0.0)


# ------------------------------------------------------------------------------------- UI
def claim_ui(utilization, compression, thresholds) -> Claim:
    """UI: the paper's ImageNet figures, not testable here; our ViT study's numbers beside."""
    e = thresholds["utilization_energy"]
    statement = (
        "On ImageNet, ViT-B/16 has an MLU of 35% and ViT-L/16 of 20%, and compressing them to "
        "their utilized ranks keeps 50% and 25% of their parameters at less than 0.2% accuracy "
        "cost after fine-tuning."
    )
    rule = (
        "Not testable at this scale: the pipeline trains no ImageNet model. Quoted beside, as "
        f"context and not as a test: each ViT study's mean MLU over its reference runs at e = "
        f"{e:g}, and the parameters kept and accuracy drop after fine-tuning of the data-driven "
        "compression at the compression energy."
    )
    runs = reference(per_run(utilization, e), thresholds)
    energy = compression_energy(compression, e)
    compressed = (
        compression_runs(compression, utilization, energy, thresholds)
        if math.isfinite(energy)
        else pd.DataFrame()
    )
    details = []
    for study, group in runs[runs["vit"].astype(bool)].groupby("study", sort=True):
        mlu, low, high = t_interval(group["mlu"])
        ours = compressed[compressed["study"] == study] if len(compressed) else compressed
        details.append(
            {
                "study": study,
                "n": len(group),
                "value": mlu,
                "low": low,
                "high": high,
                "param_fraction": ours["param_fraction"].mean() if len(ours) else None,
                "acc_drop_after": ours["drop"].mean() if len(ours) else None,
                "result": Check(Outcome.INFORMATION, "context, not a test: an MNIST-scale ViT"),
            }
        )
    if details:
        statistic = "not testable at this scale; ours, for context only: " + "; ".join(
            f"{d['study']} MLU {interval_text(d['value'], d['low'], d['high'])} (n = {d['n']})"
            f", parameters kept {percent(d['param_fraction'])}, accuracy drop "
            f"{fmt(d['acc_drop_after'])}"
            for d in details
        )
    else:
        statistic = "not testable at this scale; no ViT study among ours to quote beside"
    return Claim(
        "UI",
        statement,
        rule,
        Verdict.NOT_TESTABLE,
        statistic,
        details,
        n=0,
        measure="(paper's ImageNet figures)",
    )


# ------------------------------------------------------------------------------------- U6
PAPER_MLU = (
    "the paper's MLU: 70% after self-supervised pre-training, 35% (ViT-B/16) and 20% "
    "(ViT-L/16) supervised, on ImageNet"
)


def paired_runs(runs: pd.DataFrame, pretrained: str, supervised: str) -> pd.DataFrame:
    """One row per pair of finished runs of the self-supervised study ``pretrained`` and the
    supervised study ``supervised`` on the same dataset, λ and seed (the same initial
    network): the pre-trained run's columns, and the supervised run's with ``_supervised``.
    """
    keys = ["dataset", "weight_decay", "seed"]
    return runs[runs["study"] == pretrained].merge(
        runs[runs["study"] == supervised], on=keys, suffixes=("", "_supervised")
    )


def claim_u6(utilization, compression, thresholds) -> Claim:
    """U6: per self-supervised study, dataset and λ, the mean over seeds of MLU after
    pre-training minus MLU of the same network trained supervised from the same seed, with its
    t-interval, claimed above 0; the untrained network's MLU and the accuracies beside.
    """
    e = thresholds["utilization_energy"]
    pairs = thresholds.get("u6_pairs", {})
    statement = (
        "Self-supervised pre-training raises a network's utilization (the paper: up to an MLU "
        "of 70%, against 35% and 20% for supervised ViT-B/16 and ViT-L/16 on ImageNet)."
    )
    rule = (
        "Per self-supervised study (objective simclr, docs/science.md §5) and the supervised "
        "study it names in pretraining.compare_with (same model, loss and dataset), per dataset "
        "and λ: pairs of finished runs of the same seed (the same initial network), the mean "
        f"over seeds of MLU(pre-trained) − MLU(supervised) at e = {e:g} with its 95% t-interval "
        "across seeds. A group passes if the whole interval is above 0, fails if wholly below, "
        "else is inconclusive; with fewer than 2 pairs it has too few points and does not "
        "decide. Holds iff every group tested passes; does not hold if one fails; else "
        "inconclusive. Beside it, never scored: the MLU of each network kind and of the "
        "untrained network, and the linear-probe, fine-tuned and supervised test accuracies. "
        "The paper's 70% is not testable at this scale (ImageNet ViTs, far larger than ours)."
    )
    measure = "mean MLU difference (self-supervised − supervised)"
    if not pairs:
        return Claim(
            "U6",
            statement,
            rule,
            Verdict.NOT_RUN,
            "not run: no study with objective simclr and pretraining.compare_with among "
            "utilization.studies",
            [],
            n=0,
            measure=measure,
        )
    runs = per_run(utilization, e)
    details = []
    for pretrained, supervised in sorted(pairs.items()):
        paired = paired_runs(runs, pretrained, supervised)
        for (dataset, wd), group in paired.groupby(["dataset", "weight_decay"], sort=True):
            difference = group["mlu"] - group["mlu_supervised"]
            value, low, high, check = mean_check(difference, 0.0, ">", "MLU difference")
            intervals = {
                name: t_interval(group[column])
                for name, column in (
                    ("pretrained", "mlu"),
                    ("supervised", "mlu_supervised"),
                    ("untrained", "init_mlu"),
                )
            }
            details.append(
                {
                    "study": pretrained,
                    "compared_with": supervised,
                    "dataset": dataset,
                    "weight_decay": wd,
                    "n": len(group),
                    **{f"mlu_{k}": v[0] for k, v in intervals.items()},
                    **{f"mlu_{k}_low": v[1] for k, v in intervals.items()},
                    **{f"mlu_{k}_high": v[2] for k, v in intervals.items()},
                    "above_untrained": float((group["mlu"] - group["init_mlu"]).mean()),
                    "probe_test_acc": float(group["test_acc"].mean()),
                    "finetune_test_acc": float(group["finetune_test_acc"].mean()),
                    "supervised_test_acc": float(group["test_acc_supervised"].mean()),
                    "value": value,
                    "low": low,
                    "high": high,
                    "line": 0.0,
                    "result": check,
                }
            )
    n = int(sum(d["n"] for d in details if d["result"].counted))
    if details:
        statistic = (
            f"{tally([d['result'] for d in details], 'groups')}; n = {n} pairs; per group the "
            "mean MLU difference [95% interval across seeds]; MLU pre-trained, supervised, "
            "untrained; test accuracy linear probe, fine-tuned, supervised: "
            + "; ".join(
                f"{d['study']} − {d['compared_with']} on {d['dataset']} λ={d['weight_decay']:g}: "
                f"{interval_text(d['value'], d['low'], d['high'])} (n = {d['n']}); MLU "
                f"{percent(d['mlu_pretrained'])}, {percent(d['mlu_supervised'])}, "
                f"{percent(d['mlu_untrained'])}; accuracy {percent(d['probe_test_acc'])}, "
                f"{percent(d['finetune_test_acc'])}, {percent(d['supervised_test_acc'])}"
                for d in details
            )
            + f". Not testable at this scale: {PAPER_MLU}."
        )
    else:
        statistic = "no pair of finished runs of the same dataset, λ and seed in " + ", ".join(
            f"{a} and {b}" for a, b in sorted(pairs.items())
        )
    return decided("U6", statement, rule, statistic, details, measure, n, ">", 0.0)


# U1-U5 and UI are about networks trained with labels; U6 compares them with pre-trained ones.
CLAIMS = [claim_u1, claim_u2, claim_u3, claim_u4, claim_u5, claim_ui]
