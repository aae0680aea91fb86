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
# (dashed). One panel per dataset, one colour per weight decay λ (first seed).

# %% tags=["parameters"]
study = "tiny"
utilization = "results/tables/tiny/utilization.parquet"
compression = "results/tables/tiny/compression.parquet"
pdf = "figure.pdf"
png = "figure.png"
energy = 0.99

# %%
import numpy as np
import seaborn as sns
from rankcollapse import files, plotting

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(utilization))
print("left out:", left_out or "none")
runs = runs[np.isclose(runs["energy"], energy)]
runs = runs[runs["seed"] == runs.groupby(["dataset", "weight_decay"])["seed"].transform("min")]
runs["layer_label"] = runs["layer"] + " " + runs["kind"]
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

# %%
grid = sns.relplot(
    data=long.sort_values("position"),
    x="position",
    y="fraction",
    hue="λ",
    hue_order=order,
    palette="viridis",
    style="method",
    col="dataset",
    kind="line",
    marker="o",
    height=3.2,
    aspect=1.3,
    facet_kws={"sharex": False},
)
for ax in grid.axes.flat:
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right")
    ax.set_ylim(0, 1.05)
grid.set_axis_labels("layer", f"utilization at e = {energy:g}")
grid.figure.suptitle(f"{study}: utilized rank against plain-SVD rank per layer", y=1.04)
plotting.save(grid.figure, pdf, png, left_out)
mlu = runs.groupby(["dataset", "weight_decay"])[["utilization", "svd_utilization"]].mean()
mlu.rename(columns={"utilization": "MLU", "svd_utilization": "plain-SVD MLU"})
