# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # The measured distance to rank K against the bound and against ‖W‖_F
#
# Every layer of every finished run with λ > 0 (the bound is undefined at λ = 0) that reaches
# training accuracy claims.min_train_acc: a run that does not fit its classes has no K-class
# structure for the theorem to act on, and one that collapsed to zero weights has tail_K near
# 10⁻⁸⁰, which would squash every other point (the title counts them; the check of the bound
# covers them all). Where no run trains, every run is drawn.
#
# - Left: tail_K/‖W‖_F against bound/‖W‖_F, bound = ‖E_l‖_F/(Nλ) + ‖R_l‖_F/λ. Every point must
#   lie below the identity line (claim C3a, a check of the code: a point above it is a bug;
#   the title counts checks and violations over every finished run). The trivial bound is
#   tail_K ≤ ‖W‖_F (the dotted lines at 1): the bound says something only left of 1. The
#   title gives claim C3b's number, computed as the claim computes it: the median of
#   bound/‖W‖_F with its 95% bootstrap interval (resampling runs) per dataset over the hidden
#   layers of the runs the claims count (certified stationary, training accuracy ≥
#   claims.min_train_acc).
# - Middle: bound/‖W‖_F against λ, per layer: where the bound becomes informative.
# - Right: tail_K against TCV/λ, with the least-squares line of log tail_K on log(TCV/λ) per
#   hidden layer (datasets, λ and seeds pooled), its slope and 95% t-interval; over the
#   counted runs, or, where there are none, over the runs drawn (dashed, marked so).
#
# Layers whose tail is exactly 0 (e.g. an output layer with d_out = K) cannot be drawn on log
# axes and are left out (counted below). Filled markers: runs certified stationary, where
# ‖R_l‖/λ is at most tol·‖W_l‖; hollow: runs that are not certified.

# %% tags=["parameters"]
study = "tiny"
table = "results/tables/tiny/layers.parquet"
history = "results/tables/tiny/history.parquet"
spectra = "results/tables/tiny/spectra.parquet"
pdf = "figure.pdf"
png = "figure.png"
rank_measure = "rank_fro"
variability_measure = "tcv"
claims = {"min_train_acc": 0.9}

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from rankcollapse import files, plotting
from rankcollapse.claims.statistics import (
    RUN_KEYS,
    bound_slope_rows,
    counted_runs,
    hidden,
    log_log_fit,
    median_interval,
)

plotting.set_style()


def fmt(value) -> str:
    return f"{value:.3g}" if np.isfinite(value) else "—"


runs, left_out = plotting.finished_runs(files.read_table(table))
print("left out:", left_out or "none")
runs = plotting.with_certificate(runs[runs["weight_decay"] > 0])
runs = runs.assign(
    bound_over_norm=runs["bound"] / runs["frobenius_norm"],
    run=runs[RUN_KEYS].astype(str).agg("/".join, axis=1),
)

# bound_holds is True/False, or None where there is nothing to check (λ = 0, dropped above).
holds = runs["bound_holds"].astype("boolean")
violated = runs[holds.eq(False).fillna(False)]
print(f"bound checks: {int(holds.notna().sum())}, violations: {len(violated)}")
if len(violated):
    print(violated[["dataset", "weight_decay", "seed", "layer", "tail_K", "bound"]].to_string())

zero = runs["tail_K"] <= 0
print(f"tail_K = 0, left out (log axes): {int(zero.sum())}")
points = runs[~zero].sort_values("layer_index")
layer_order = list(points["layer"].unique())
palette = plotting.colours(layer_order)
# Runs that do not reach the claims' training accuracy are not drawn (see the top).
shown, not_drawn = plotting.trained_runs(points, claims["min_train_acc"])
print(f"runs below train acc {claims['min_train_acc']:g}, not drawn:", not_drawn)
datasets = sorted(points["dataset"].unique())

# Claim C3b's number: median bound/‖W‖_F per dataset over the hidden layers of counted runs.
counted = counted_runs(runs, claims["min_train_acc"])
counted_hidden = counted[hidden(counted)]
medians = pd.DataFrame(
    [
        dict(
            zip(
                ("dataset", "median", "low", "high"),
                (dataset, *median_interval(group["bound_over_norm"], group["run"])),
                strict=True,
            ),
            runs=group["run"].nunique(),
        )
        for dataset, group in counted_hidden.groupby("dataset")
    ],
    columns=["dataset", "median", "low", "high", "runs"],
).set_index("dataset")
print(medians.to_string())

# Least-squares lines per hidden layer: over the counted runs, else over the runs drawn (marked).
fit_from_counted = not bound_slope_rows(counted).empty
fitted = bound_slope_rows(counted if fit_from_counted else shown)
fits = pd.DataFrame(
    [
        {"layer": layer, **vars(log_log_fit(group["tcv_over_wd"], group["tail_K"]))}
        for layer, group in fitted.groupby("layer", sort=False)
    ],
    columns=["layer", "slope", "intercept", "low", "high", "n"],
).set_index("layer")
print("fits over", "counted runs" if fit_from_counted else "the runs drawn (none counted)")
print(fits.to_string())

# %%
fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
if points.empty:
    for ax in (left, middle, right):
        ax.text(0.5, 0.5, "no run with λ > 0 and tail_K > 0", ha="center", va="center")
        ax.set_axis_off()
else:
    style = {
        "hue": "layer",
        "hue_order": layer_order,
        "palette": palette,
        "style": "dataset",
        "style_order": datasets,
        "s": 40,
    }
    plotting.certificate_scatter(shown, x="bound_over_norm", y="rel_tail_K", ax=left, **style)
    # Violations are ringed in red, so that a single one cannot hide among the other points.
    if len(violated):
        left.scatter(
            violated["bound"] / violated["frobenius_norm"],
            violated["rel_tail_K"],
            s=160,
            facecolors="none",
            edgecolors="red",
            label="bound violated",
        )
    plotting.certificate_scatter(
        shown, x="weight_decay", y="bound_over_norm", ax=middle, legend=False, **style
    )
    plotting.certificate_scatter(
        shown, x="tcv_over_wd", y="tail_K", ax=right, legend=False, **style
    )
    for ax in (left, middle, right):
        plotting.log_axis(ax, "x")
        plotting.log_axis(ax, "y")
    # The identity line spans the left panel's bounds, so a point above it would be plain to
    # see (every tail_K/‖W‖_F is at most 1, so the axis reaches 1).
    low = min(shown["bound_over_norm"].min(), 1.0) / 2
    high = max(shown["bound_over_norm"].max(), 1.0) * 2
    left.plot([low, high], [low, high], color="0.3", linestyle="--", linewidth=0.9)
    left.set_xlim(low, high)
    for line in (left.axvline, left.axhline, middle.axhline):
        line(1.0, color="0.3", linestyle=":", linewidth=1)
    # C3b's median per dataset, as the claim computes it.
    if len(medians):
        text = "\n".join(
            f"{dataset}: {fmt(m['median'])} [{fmt(m['low'])}, {fmt(m['high'])}],"
            f" {int(m['runs'])} runs"
            for dataset, m in medians.iterrows()
        )
        text = "median bound/‖W‖_F, counted runs:\n" + text
    else:
        text = "no counted run (certified, train acc ≥ {:g}): no median".format(
            claims["min_train_acc"]
        )
    checks = f"C3a: {int(holds.notna().sum())} checks, {len(violated)} violations"
    left.set_title(f"{checks}; C3b: left of 1?\n{text}", fontsize=9)
    # One legend for the points, outside, so it covers none of them.
    handles, labels = left.get_legend_handles_labels()
    left.get_legend().remove()
    handles += [
        plt.Line2D([], [], color="0.3", linestyle="--"),
        plt.Line2D([], [], color="0.3", linestyle=":"),
    ]
    labels += ["tail_K = bound", "‖W‖_F (tail_K ≤ ‖W‖_F always)"]
    certificate = plotting.certificate_handles()
    handles += [plt.Line2D([], [], visible=False), *certificate.values()]
    labels += ["certificate", *certificate]
    fig.legend(handles, labels, loc="outside right upper")
    # The fitted lines get a legend of their own in the right panel: one per hidden layer.
    fit_handles = []
    unfitted = [layer for layer, fit in fits.iterrows() if np.isnan(fit["slope"])]
    for layer, fit in fits.drop(unfitted).iterrows():
        x = fitted.loc[fitted["layer"] == layer, "tcv_over_wd"]
        xs = np.geomspace(x.min(), x.max(), 20)
        (line,) = right.plot(
            xs,
            np.exp(fit["intercept"]) * xs ** fit["slope"],
            color=palette[layer],
            linewidth=1.3,
            label=f"{layer}: {fmt(fit['slope'])} [{fmt(fit['low'])}, {fmt(fit['high'])}]",
        )
        if not fit_from_counted:
            line.set_dashes(plotting.CERTIFICATE_DASHES[plotting.NOT_CERTIFIED])
        fit_handles.append(line)
    if unfitted:
        names = ", ".join(unfitted) if len(unfitted) <= 3 else f"{len(unfitted)} layers"
        text = f"no fit (< 3 points or one x value): {names}"
        fit_handles.append(plt.Line2D([], [], color="none", label=text))
    title = "slope of log tail_K on log(TCV/λ), 95%"
    if not fit_from_counted:
        title += "\nruns drawn: none certified with train acc ≥ {:g}".format(
            claims["min_train_acc"]
        )

    right.legend(handles=fit_handles, title=title, fontsize=7, title_fontsize=7)
left.set(xlabel="bound / ‖W‖_F  (‖E‖_F/(Nλ) + ‖R‖_F/λ) / ‖W‖_F", ylabel="tail_K / ‖W‖_F")
middle.set(xlabel=plotting.label("weight_decay"), ylabel="bound / ‖W‖_F")
middle.set_title("where the bound says something")
right.set(xlabel="TCV / λ of layer input", ylabel=plotting.label("tail_K"))
right.set_title("tail_K against TCV/λ, fit per hidden layer")
suptitle = f"{study}: distance to rank K against the bound, λ > 0"
suptitle += plotting.not_drawn_note(not_drawn, claims["min_train_acc"])
fig.suptitle(suptitle)
plotting.save(fig, pdf, png, left_out)
# Per dataset and layer: checks, violations, the largest tail_K / bound (≤ 1 if it holds) and
# the median bound / ‖W‖_F (< 1: informative).
summary = runs.assign(holds=holds, ratio=runs["tail_K"] / runs["bound"])
summary.groupby(["dataset", "layer"], sort=False).agg(
    checks=("holds", "count"),
    violations=("holds", lambda h: int(h.eq(False).sum())),
    max_tail_over_bound=("ratio", "max"),
    median_bound_over_norm=("bound_over_norm", "median"),
)
