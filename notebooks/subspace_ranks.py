# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Input and output subspace dimensions per layer
#
# k_S / d_in (dimension of the input subspace holding a fraction e of Σ x xᵀ) and
# k_T / d_out (likewise for the outputs, W C_in Wᵀ), per layer, one panel per energy e and
# dataset, one colour per weight decay λ (first seed). The utilized rank is at most
# min(k_S, k_T).

# %% tags=["parameters"]
study = "tiny"
utilization = "results/tables/tiny/utilization.parquet"
compression = "results/tables/tiny/compression.parquet"
pdf = "figure.pdf"
png = "figure.png"
energy = 0.99

# %%
import seaborn as sns
from rankcollapse import files, plotting

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(utilization))
print("left out:", left_out or "none")
runs = runs[runs["seed"] == runs.groupby(["dataset", "weight_decay"])["seed"].transform("min")]
runs["layer_label"] = runs["layer"] + " " + runs["kind"]
long = runs.melt(
    id_vars=["dataset", "weight_decay", "energy", "position", "layer_label"],
    value_vars=["k_S_fraction", "k_T_fraction"],
    var_name="subspace",
    value_name="fraction",
)
long["subspace"] = long["subspace"].map(
    {"k_S_fraction": "input  k_S / d_in", "k_T_fraction": "output  k_T / d_out"}
)
long["λ"] = long["weight_decay"].map(lambda w: f"{w:g}")
long["e"] = long["energy"].map(lambda e: f"e = {e:g}")
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
    style="subspace",
    row="dataset",
    col="e",
    kind="line",
    marker="o",
    height=2.8,
    aspect=1.2,
    facet_kws={"margin_titles": True},
)
for ax in grid.axes.flat:
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right")
    ax.set_ylim(0, 1.05)
# The column values already read "e = 0.9": seaborn's default title would repeat "e = ".
grid.set_titles(row_template="{row_name}", col_template="{col_name}")
grid.set_axis_labels("layer", "subspace dimension / layer width")
grid.figure.suptitle(f"{study}: input and output subspaces per layer", y=1.03)
plotting.save(grid.figure, pdf, png, left_out)
runs.pivot_table(
    index=["dataset", "weight_decay", "layer"], columns="energy", values=["k_S", "k_T"]
)
