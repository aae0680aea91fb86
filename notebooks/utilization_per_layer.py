# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Utilization per layer: data-driven projection against plain SVD
#
# Utilization r / min(d_in, d_out) of every measured layer at the headline energy e: the
# utilized rank r = rank(P_T W P_S) (solid) against the plain-SVD rank of W at the same energy
# (dashed). One panel per dataset, one colour per weight decay λ (first seed). In grey, the
# random-initialisation baseline: the same two of the runs' initial weights (untrained), mean
# over seeds with its 95% t-interval across seeds where there are several (claims U1, U2).

# %% tags=["parameters"]
study = "tiny"
utilization = "results/tables/tiny/utilization.parquet"
compression = "results/tables/tiny/compression.parquet"
pdf = "figure.pdf"
png = "figure.png"
energy = 0.99

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from rankcollapse import files, plotting
from rankcollapse.claims.statistics import t_interval

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(utilization))
print("left out:", left_out or "none")
runs = runs[np.isclose(runs["energy"], energy)]
runs["layer_label"] = runs["layer"] + " " + runs["kind"]
# The untrained baseline: one initial network per dataset and seed (its runs share it).
initial = runs.drop_duplicates(["dataset", "seed", "position"])
baseline_columns = {"init_utilization": "", "init_svd_utilization": (4, 1.5)}
baseline = []
for column in baseline_columns if "init_utilization" in initial else []:
    for (dataset, position), group in initial.groupby(["dataset", "position"]):
        mean, low, high = t_interval(group[column])
        baseline.append(
            {"dataset": dataset, "position": position, "column": column, "mean": mean,
             "low": low, "high": high}
        )  # fmt: skip
baseline = pd.DataFrame(baseline, columns=["dataset", "position", "column", "mean", "low", "high"])
runs = runs[runs["seed"] == runs.groupby(["dataset", "weight_decay"])["seed"].transform("min")]
long = runs.melt(
    id_vars=["dataset", "weight_decay", "position", "layer_label"],
    value_vars=["utilization", "svd_utilization"],
    var_name="method",
    value_name="fraction",
)
long["method"] = long["method"].map(
    {"utilization": "data-driven  rank(P_T W P_S)", "svd_utilization": "plain SVD of W"}
)
long["λ"] = long["weight_decay"].map(lambda w: f"{w:g}")
order = [f"{w:g}" for w in sorted(runs["weight_decay"].unique())]
labels = runs.sort_values("position").drop_duplicates("position")["layer_label"].tolist()
colours = plotting.colours(order, "viridis")
methods = {"data-driven  rank(P_T W P_S)": "", "plain SVD of W": (4, 1.5)}
UNTRAINED = "0.55"  # the baseline's grey

# %%
grid = sns.relplot(
    data=long.sort_values("position"),
    x="position",
    y="fraction",
    hue="λ",
    hue_order=order,
    palette=colours,
    style="method",
    style_order=list(methods),
    dashes=methods,
    col="dataset",
    kind="line",
    marker="o",
    height=3.2,
    aspect=1.3,
    facet_kws={"sharex": False},
    legend=False,
)
# The untrained baseline beside: mean over seeds, bars the 95% t-interval across seeds.
for dataset, ax in grid.axes_dict.items():
    for column, dashes in baseline_columns.items():
        b = baseline[(baseline["dataset"] == dataset) & (baseline["column"] == column)]
        if b.empty:
            continue
        b = b.sort_values("position")
        (line,) = ax.plot(b["position"], b["mean"], color=UNTRAINED, marker="x", zorder=1)
        if dashes:
            line.set_dashes(dashes)
        bars = b.dropna(subset=["low"])
        ax.errorbar(
            bars["position"],
            bars["mean"],
            yerr=[bars["mean"] - bars["low"], bars["high"] - bars["mean"]],
            fmt="none",
            ecolor=UNTRAINED,
            capsize=2,
            zorder=1,
        )
method_handles = {}
for method, dashes in methods.items():
    method_handles[method] = plt.Line2D([], [], color="0.35", marker="o", markersize=4)
    if dashes:
        method_handles[method].set_dashes(dashes)
sections = {"λ": plotting.hue_handles(colours), "method": method_handles}
if not baseline.empty:
    sections["baseline"] = {
        "untrained (initial weights), mean ± 95% CI over seeds": plt.Line2D(
            [], [], color=UNTRAINED, marker="x"
        )
    }
plotting.legend(grid, sections)
for ax in grid.axes.flat:
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right")
    ax.set_ylim(0, 1.05)
grid.set_axis_labels("layer", f"utilization at e = {energy:g}")
grid.figure.suptitle(f"{study}: utilized rank against plain-SVD rank per layer", y=1.04)
plotting.save(grid.figure, pdf, png, left_out)
mlu = runs.groupby(["dataset", "weight_decay"])[["utilization", "svd_utilization"]].mean()
print(baseline.groupby(["dataset", "column"])["mean"].mean().unstack())  # untrained MLU
mlu.rename(columns={"utilization": "MLU", "svd_utilization": "plain-SVD MLU"})
