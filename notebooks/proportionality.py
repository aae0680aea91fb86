# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Proportionality: a layer's distance to rank K against its input's variability, at fixed λ
#
# Paper A's central statement: at a fixed weight decay λ, a layer's scale-free distance to rank
# K grows with the within-class variability of the embeddings entering it. One column per
# λ > 0, one row per distance (claims.distance_measures: tail_K/‖W‖_F and σ_{K+1}/σ₁); x is
# the variability of the layer's input (claims.variability_measure, SS_W/SS_total). Each
# point is one hidden layer (min(d_in, d_out) > K) of one run, and a line joins the layers of
# one run in depth order; colour: dataset. The panel title gives claim P's statistic over the
# runs the claims count (certified stationary, training accuracy ≥ claims.min_train_acc): the
# mean over runs of the Spearman ρ across the run's hidden layers, with its 95% t-interval
# across runs and the one-sided permutation p of ρ > 0 (claims.statistics.trend, replicate =
# run); the box beside it gives the same per dataset, the groups claim P decides on. Where no
# run counts, the title gives the ρ̄ of the runs drawn, marked as not counted. Filled
# markers and solid lines: runs certified stationary; hollow and dashed: runs that are not.
# Runs whose training accuracy is below claims.min_train_acc are not drawn (the title counts
# them); axes are logarithmic where the values span a decade or more.

# %% tags=["parameters"]
study = "tiny"
table = "results/tables/tiny/layers.parquet"
history = "results/tables/tiny/history.parquet"
spectra = "results/tables/tiny/spectra.parquet"
pdf = "figure.pdf"
png = "figure.png"
rank_measure = "rank_fro"
variability_measure = "tcv"
claims = {
    "distance_measures": ["rel_tail_K", "sigma_ratio_K"],
    "variability_measure": "ss_ratio",
    "min_train_acc": 0.9,
}

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from rankcollapse import files, plotting
from rankcollapse.claims.statistics import RUN_KEYS, counted_runs, hidden, trend

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(table))
print("left out:", left_out or "none")
x = claims["variability_measure"]
measures = list(claims["distance_measures"])
runs = runs[(runs["weight_decay"] > 0) & hidden(runs)]
runs = plotting.with_certificate(runs).sort_values("layer_index")
runs["run"] = runs[RUN_KEYS].astype(str).agg("/".join, axis=1)
counted = counted_runs(runs, claims["min_train_acc"])
shown, not_drawn = plotting.trained_runs(runs, claims["min_train_acc"])
print(f"runs below train acc {claims['min_train_acc']:g}, not drawn:", not_drawn)
wds = sorted(runs["weight_decay"].unique())
datasets = sorted(runs["dataset"].unique())
colours = plotting.colours(datasets)


def fmt(value) -> str:
    return f"{value:.2g}" if np.isfinite(value) else "—"


# Claim P's statistic per panel (datasets pooled) and per dataset (the claim's groups).
rows = []
for measure in measures:
    for wd in wds:
        at = counted[counted["weight_decay"] == wd]
        for dataset, group in [("all", at), *at.groupby("dataset")]:
            tr = trend(group[x], group[measure], group["run"])
            rows.append({"measure": measure, "weight_decay": wd, "dataset": dataset, **vars(tr)})
trends = pd.DataFrame(
    rows,
    columns=["measure", "weight_decay", "dataset", "rho", "low", "high", "p_greater",
             "p_less", "min_p", "n", "replicates"],
)  # fmt: skip
print(trends.to_string())

# %%
n_cols = max(len(wds), 1)
fig, axes = plt.subplots(
    len(measures),
    n_cols,
    figsize=(3.2 * max(n_cols, 2) + 2.2, 3.3 * len(measures)),
    squeeze=False,
    sharex=True,
    sharey="row",
    layout="constrained",
)
for i, measure in enumerate(measures):
    for j, wd in enumerate(wds):
        ax = axes[i, j]
        panel = shown[shown["weight_decay"] == wd]
        plotting.run_lines(
            ax, panel, x=x, y=measure, by=["dataset", "seed"], color=lambda k: colours[k[0]]
        )
        plotting.certificate_scatter(
            panel,
            x=x,
            y=measure,
            hue="dataset",
            hue_order=datasets,
            palette=colours,
            s=30,
            zorder=3,
            legend=False,
            ax=ax,
        )
        stats = trends[(trends["measure"] == measure) & (trends["weight_decay"] == wd)]
        pooled = stats[stats["dataset"] == "all"].iloc[0]
        if pooled["replicates"]:
            head = (
                f"ρ̄ = {fmt(pooled['rho'])} [{fmt(pooled['low'])}, {fmt(pooled['high'])}], "
                f"p = {fmt(pooled['p_greater'])}, {int(pooled['replicates'])} runs"
            )
        elif len(panel):
            # Nothing counts here; the runs drawn give a number for information only.
            tr = trend(panel[x], panel[measure], panel["run"])
            head = f"no counted run (ρ̄ of those drawn: {fmt(tr.rho)})"
        else:
            head = "no counted run"
        ax.set_title(f"λ = {wd:g}\n{head}", fontsize=9)
        per_dataset = stats[(stats["dataset"] != "all") & (stats["replicates"] > 0)]
        if len(datasets) > 1 and len(per_dataset):
            text = "\n".join(
                f"{r.dataset}: {fmt(r.rho)} [{fmt(r.low)}, {fmt(r.high)}]"
                for r in per_dataset.itertuples()
            )
            box = {"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"}
            ax.text(0.98, 0.02, text, transform=ax.transAxes, ha="right", va="bottom",
                    fontsize=6.5, bbox=box)  # fmt: skip
        ax.set_xlabel(plotting.label(x) if i == len(measures) - 1 else "")
        ax.set_ylabel(plotting.label(measure) if j == 0 else "")
        if panel.empty:
            ax.text(0.5, 0.5, "no run drawn", transform=ax.transAxes, ha="center", va="center")
    if plotting.wants_log(shown[measure]):
        plotting.log_axis(axes[i, 0], "y")
if plotting.wants_log(shown[x]):
    plotting.log_axis(axes[0, 0], "x")
if not wds:
    axes[0, 0].text(0.5, 0.5, "no run with λ > 0", ha="center", va="center")
handles, labels = [], []
sections = {
    "dataset": plotting.hue_handles(colours),
    "certificate": plotting.certificate_run_handles(),
}
for title, entries in sections.items():
    handles.append(plt.Line2D([], [], visible=False))
    labels.append(title)
    handles += list(entries.values())
    labels += list(entries)
fig.legend(handles, labels, loc="outside right upper", fontsize=8)
title = f"{study}: distance to rank K against the input's variability, per λ"
note = plotting.not_drawn_note(not_drawn, claims["min_train_acc"]).strip(" ()")
fig.suptitle(title + (f"\n{note}" if note else ""), x=0.02, ha="left")
plotting.save(fig, pdf, png, left_out)
trends.pivot_table(index=["measure", "dataset"], columns="weight_decay", values="rho")
