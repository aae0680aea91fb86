# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Singular value spectra of the weight matrices
#
# σ_j (log scale) against the index j, one panel per layer and dataset, one line per weight
# decay λ. The dashed line marks j = K, the number of classes: as λ grows, the singular values
# beyond K collapse. Spectra of different seeds do not average meaningfully index by index, so
# only the first (lowest-numbered) finished seed of each dataset and λ is drawn. Solid lines:
# runs certified stationary; dashed: runs that are not (λ = 0 never is).

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
import seaborn as sns
from rankcollapse import files, plotting

plotting.set_style()
sv, _ = plotting.finished_runs(files.read_table(spectra))
# Unfinished runs have no spectra, so they are listed from the layers table, which also gives K
# per dataset (the spectra table has no class count).
layers_table, left_out = plotting.finished_runs(files.read_table(table))
print("left out:", left_out or "none")
classes = layers_table.groupby("dataset")["classes"].max()
layer_order = layers_table.sort_values("layer_index")["layer"].unique()

first_seed = sv.groupby(["dataset", "weight_decay"])["seed"].transform("min")
sv = sv[sv["seed"] == first_seed].copy()
print("seed drawn per dataset and λ:")
print(sv.groupby(["dataset", "weight_decay"])["seed"].first().unstack().to_string())
# A singular value of exactly 0 has no place on a log axis.
zero = sv["sigma"] <= 0
print(f"σ_j = 0 left out (log axis): {int(zero.sum())}")
sv = sv[~zero]
sv["λ"] = sv["weight_decay"].map(lambda w: f"{w:g}")
order = [f"{w:g}" for w in sorted(sv["weight_decay"].unique())]
sv = plotting.with_certificate(sv)
colours = plotting.colours(order, "viridis")

# %%
grid = sns.FacetGrid(
    sv,
    row="dataset",
    col="layer",
    col_order=layer_order,
    sharex=False,
    sharey=False,
    height=2.6,
    aspect=1.2,
    margin_titles=True,
)
grid.map_dataframe(
    sns.lineplot,
    x="index",
    y="sigma",
    hue="λ",
    hue_order=order,
    palette=colours,
    style="certificate",
    style_order=plotting.CERTIFICATES,
    dashes=plotting.CERTIFICATE_DASHES,
    estimator=None,
    linewidth=1.2,
    legend=False,
)
for (dataset, _), ax in grid.axes_dict.items():
    plotting.log_axis(ax, "y")
    ax.axvline(classes[dataset], color="0.4", linestyle="--", linewidth=0.8)
plotting.legend(
    grid,
    {
        "λ": plotting.hue_handles(colours, marker=None),
        "certificate": plotting.certificate_line_handles(),
    },
)
grid.set_titles(row_template="{row_name}", col_template="{col_name}")
grid.set_axis_labels("index j", "singular value σ_j")
grid.figure.suptitle(f"{study}: singular values of the weight matrices", y=1.02)
plotting.save(grid.figure, pdf, png, left_out)
# σ_{K+1} / σ_1 per run and layer: how far the spectrum beyond K has collapsed.
ratio = sv.assign(K=sv["dataset"].map(classes)).query("index == K + 1")
top = sv[sv["index"] == 1].set_index(["dataset", "weight_decay", "layer"])["sigma"]
(ratio.set_index(["dataset", "weight_decay", "layer"])["sigma"] / top).unstack("layer")
