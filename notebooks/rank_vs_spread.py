# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Layer rank against the within-class spread of synthetic data
#
# Synthetic Gaussian clusters only (datasets with a within-class standard deviation set in the
# data). One panel per layer, one line per weight decay λ (mean over seeds, band: range across
# seeds); the dashed line marks K. At fixed λ, rank should grow with the spread. A filled
# marker: every seed of that spread and λ is certified stationary; hollow: at least one is not
# (λ = 0 never is). A study with no synthetic data, or with fewer than two spreads, gets a
# figure that says so.

# %% tags=["parameters"]
study = "tiny"
table = "results/tables/tiny/layers.parquet"
history = "results/tables/tiny/history.parquet"
spectra = "results/tables/tiny/spectra.parquet"
pdf = "figure.pdf"
png = "figure.png"
rank_measure = "rank_fro"
variability_measure = "tcv"

# %%
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from rankcollapse import files, plotting

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(table))
print("left out:", left_out or "none")
# Real data has dataset_std = NaN.
runs = runs[np.isfinite(runs["dataset_std"])].copy()
runs["λ"] = runs["weight_decay"].map(lambda w: f"{w:g}")
order = [f"{w:g}" for w in sorted(runs["weight_decay"].unique())]
runs = plotting.with_certificate(runs)
colours = plotting.colours(order, "viridis")
spreads = sorted(runs["dataset_std"].unique())
print("synthetic datasets:", runs.groupby("dataset")["dataset_std"].first().to_dict())
# Two synthetic datasets with the same spread (differing in something else) share a point.
shared = runs.groupby("dataset_std")["dataset"].nunique()
if (shared > 1).any():
    print("warning: several datasets per spread, pooled:", shared[shared > 1].to_dict())

# %%
if len(spreads) < 2:
    fig, ax = plt.subplots(figsize=(5, 2.5))
    ax.text(
        0.5,
        0.5,
        f"{study}: no synthetic data with ≥ 2 within-class spreads\n"
        f"(spreads found: {', '.join(f'{s:g}' for s in spreads) or 'none'})",
        ha="center",
        va="center",
    )
    ax.set_axis_off()
else:
    grid = sns.relplot(
        data=runs.sort_values("layer_index"),
        x="dataset_std",
        y=rank_measure,
        hue="λ",
        hue_order=order,
        palette=colours,
        col="layer",
        kind="line",
        errorbar=("pi", 100),
        facet_kws={"sharey": False},
        height=3,
        legend=False,
    )
    # The markers: at the mean over seeds (and over datasets sharing a spread), as the line,
    # hollow unless every run there is certified.
    grid.map_dataframe(
        plotting.certificate_scatter,
        x="dataset_std",
        y=rank_measure,
        mean=True,
        hue="λ",
        hue_order=order,
        palette=colours,
        s=36,
        zorder=3,
        legend=False,
    )
    # Spreads are usually spaced by factors (0.5, 1, 2): log x when all are positive; ticks at
    # the spreads that were run.
    for ax in grid.axes.flat:
        if spreads[0] > 0:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(spreads, [f"{s:g}" for s in spreads])
    plotting.mark_classes(grid, runs, rank_measure)
    plotting.legend(
        grid,
        {
            "λ": plotting.hue_handles(colours),
            "certificate": plotting.certificate_handles(mean=True),
        },
    )
    grid.set_titles(col_template="{col_name}")
    grid.set_axis_labels("within-class std of the data", plotting.label(rank_measure))
    grid.figure.suptitle(f"{study}: rank against the within-class spread of the data", y=1.03)
    fig = grid.figure
plotting.save(fig, pdf, png, left_out)
runs.pivot_table(index=["dataset_std", "weight_decay"], columns="layer", values=rank_measure)
