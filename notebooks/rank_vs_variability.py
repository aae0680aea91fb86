# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Distance to rank K against the within-class variability of the layer's input
#
# The measures claim P decides on: a hidden layer's scale-free distance to rank K (rows:
# claims.distance_measures, tail_K/‖W‖_F and σ_{K+1}/σ₁) against the within-class variability
# (claims.variability_measure, SS_W/SS_total) of the embeddings entering it. One panel per
# row and dataset, one colour per λ; each point is one hidden layer (marker shape), at the mean
# over seeds with its 95% t-interval across seeds in both directions where there are several
# seeds, and a line joins the layers of one λ in depth order. Neural rank collapse predicts two
# things: along a line, deeper layers (smaller input variability) are nearer rank K (the line
# rises to the right, proportionality); across lines, larger λ moves the points down and to
# the left. Filled markers and solid lines: every seed certified stationary; hollow and
# dashed: at least one is not (λ = 0 never is). Runs whose training accuracy is below
# claims.min_train_acc are not drawn (the title counts them); axes are logarithmic where the
# values span a decade or more.

# %% tags=["parameters"]
study = "mnist_mlp"
table = "results/tables/mnist_mlp/layers.parquet"
history = "results/tables/mnist_mlp/history.parquet"
spectra = "results/tables/mnist_mlp/spectra.parquet"
pdf = "rank_vs_variability.pdf"
png = "rank_vs_variability.png"
rank_measure = "rank_fro"
variability_measure = "tcv"
claims = {
    "distance_measures": ["rel_tail_K", "sigma_ratio_K"],
    "variability_measure": "ss_ratio",
    "min_train_acc": 0.9,
}

# %%
import itertools

import matplotlib.pyplot as plt
import pandas as pd
from rankcollapse import files, plotting
from rankcollapse.claims.statistics import hidden, t_interval

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(table))
print("left out:", left_out or "none")
runs = plotting.with_certificate(runs)
x = claims["variability_measure"]
measures = list(claims["distance_measures"])
runs, not_drawn = plotting.trained_runs(runs, claims["min_train_acc"])
print(f"runs below train acc {claims['min_train_acc']:g}, not drawn:", not_drawn)
rows = runs[hidden(runs)].sort_values("layer_index")
print("hidden layers:", list(rows["layer"].unique()))
datasets = sorted(rows["dataset"].unique())
wds = sorted(rows["weight_decay"].unique())
colours = plotting.colours([f"{w:g}" for w in wds], "viridis")
layers = list(rows["layer"].unique())
# Markers repeat past ten layers (a 12-block ViT has 48 hidden layers).
markers = dict(zip(layers, itertools.cycle("osD^vPX<>p"), strict=False))


def seed_mean(group: pd.DataFrame) -> pd.Series:
    """Mean over seeds of x and every measure, with t-intervals, and the certificate of all."""
    out = {"seeds": len(group), "layer_index": group["layer_index"].iloc[0]}
    for column in [x, *measures]:
        out[column], out[f"{column}_low"], out[f"{column}_high"] = t_interval(group[column])
    every = group["certificate"].eq(plotting.CERTIFIED).all()
    out["certificate"] = plotting.CERTIFIED if every else plotting.NOT_CERTIFIED
    return pd.Series(out)


means = (
    rows.groupby(["dataset", "weight_decay", "layer"], sort=False)
    .apply(seed_mean, include_groups=False)
    .reset_index()
    .sort_values(["dataset", "weight_decay", "layer_index"])
)
means["λ"] = means["weight_decay"].map(lambda w: f"{w:g}")

# %%
fig, axes = plt.subplots(
    len(measures),
    max(len(datasets), 1),
    figsize=(3.6 * max(len(datasets), 2) + 2.2, 3.2 * len(measures)),
    squeeze=False,
    layout="constrained",
)
for (i, measure), (j, dataset) in (
    (m, d) for m in enumerate(measures) for d in enumerate(datasets)
):
    ax = axes[i, j]
    panel = means[means["dataset"] == dataset]
    for wd, line in panel.groupby("weight_decay", sort=True):
        colour = colours[f"{wd:g}"]
        xerr = [line[x] - line[f"{x}_low"], line[f"{x}_high"] - line[x]]
        yerr = [line[measure] - line[f"{measure}_low"], line[f"{measure}_high"] - line[measure]]
        ax.errorbar(
            line[x],
            line[measure],
            xerr=[e.fillna(0).clip(lower=0) for e in xerr],
            yerr=[e.fillna(0).clip(lower=0) for e in yerr],
            fmt="none",
            ecolor=colour,
            elinewidth=0.7,
            alpha=0.45,
        )
    plotting.run_lines(
        ax, panel, x=x, y=measure, by="weight_decay", color=lambda wd: colours[f"{wd:g}"]
    )
    for layer, points in panel.groupby("layer", sort=False):
        plotting.certificate_scatter(
            points,
            x=x,
            y=measure,
            hue="λ",
            hue_order=list(colours),
            palette=colours,
            marker=markers[layer],
            s=40,
            zorder=3,
            legend=False,
            ax=ax,
        )
    values = rows.loc[rows["dataset"] == dataset]
    if plotting.wants_log(values[x]):
        plotting.log_axis(ax, "x")
    if plotting.wants_log(values[measure]):
        plotting.log_axis(ax, "y")
    ax.set_title(dataset if i == 0 else "")
    ax.set_xlabel(plotting.label(x) if i == len(measures) - 1 else "")
    ax.set_ylabel(plotting.label(measure) if j == 0 else "")
    if panel.empty:
        ax.text(0.5, 0.5, "no hidden layer", transform=ax.transAxes, ha="center", va="center")
layer_handles = {
    layer: plt.Line2D([], [], linestyle="", marker=m, color="0.35") for layer, m in markers.items()
}
sections = {
    "λ": plotting.hue_handles(colours),
    "hidden layer": layer_handles,
    "certificate": plotting.certificate_run_handles(mean=True),
}
handles, labels = [], []
for title, entries in sections.items():
    handles.append(plt.Line2D([], [], visible=False))
    labels.append(title)
    handles += list(entries.values())
    labels += list(entries)
fig.legend(handles, labels, loc="outside right upper", fontsize=8)
title = f"{study}: distance to rank K against the variability of the layer input"
note = plotting.not_drawn_note(not_drawn, claims["min_train_acc"]).strip(" ()")
fig.suptitle(title + (f"\n{note}" if note else ""), x=0.02, ha="left")
plotting.save(fig, pdf, png, left_out)
means.pivot_table(index=["dataset", "weight_decay"], columns="layer", values=measures[0])
