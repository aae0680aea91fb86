# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Within-class variability of each layer's input against the weight decay λ
#
# Rows: four measures of the within-class variability of the embeddings that enter the layer,
# on the training set: TCV Σ_i‖z_i − μ_c‖, the ratio SS_W / SS_total, CDNV and NC1. Columns:
# layers. One line per dataset (mean over seeds, band: range across seeds). They need not move
# together. Claim C2 predicts that the scale-free SS_W / SS_total falls as λ grows, and CDNV
# with it; TCV falls partly from scale alone, since weight decay shrinks the embeddings. NC1 =
# tr(Σ_W Σ_B⁺)/K can rise with λ: when the class means collapse onto fewer than K − 1
# directions, Σ_B⁺ inverts a smaller between-class scatter (Súkeník et al. 2024). The input of
# layer 1 is the data, which λ does not change, so its panels are flat. A filled marker: every
# seed of that dataset and λ is certified stationary; hollow: at least one is not (λ = 0 never
# is).

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
import numpy as np
import seaborn as sns
from rankcollapse import files, plotting

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(table))
print("left out:", left_out or "none")
runs = plotting.with_certificate(runs)
datasets = sorted(runs["dataset"].unique())
colours = plotting.colours(datasets)
# The configured variability measure gets a row of its own when it is not one of the four.
measures = list(dict.fromkeys(["tcv", "ss_ratio", "cdnv", "nc1", variability_measure]))
# SS_W / SS_total is a fraction in [0, 1]; the other measures span decades across layers and λ.
linear = {"ss_ratio"}
layers = runs.sort_values("layer_index")["layer"].unique()
long = runs.melt(
    id_vars=["dataset", "weight_decay", "seed", "layer", "certificate"],
    value_vars=measures,
    var_name="measure",
    value_name="value",
)
# CDNV is infinite where a network collapsed all class means onto one point: not drawn.
long["value"] = long["value"].replace([np.inf, -np.inf], np.nan)
print("non-finite values, not drawn:", int(long["value"].isna().sum()))

# %%
grid = sns.relplot(
    data=long,
    x="weight_decay",
    y="value",
    hue="dataset",
    hue_order=datasets,
    palette=colours,
    row="measure",
    row_order=measures,
    col="layer",
    col_order=layers,
    kind="line",
    errorbar=("pi", 100),
    facet_kws={"sharey": False, "margin_titles": True},
    height=2.6,
    aspect=1.2,
    legend=False,
)
# The markers: at the mean over seeds, as the line, hollow unless every seed is certified.
grid.map_dataframe(
    plotting.certificate_scatter,
    x="weight_decay",
    y="value",
    mean=True,
    hue="dataset",
    hue_order=datasets,
    palette=colours,
    s=30,
    zorder=3,
    legend=False,
)
for (measure, _), ax in grid.axes_dict.items():
    plotting.wd_axis(ax, runs["weight_decay"].unique())
    if measure not in linear:
        plotting.log_axis(ax, "y")
# The row is named by the y label of its first panel; the margin titles would repeat it.
grid.set_titles(row_template="", col_template="{col_name}")
for measure, axes in zip(measures, grid.axes, strict=True):
    axes[0].set_ylabel(plotting.label(measure))
plotting.legend(
    grid,
    {
        "dataset": plotting.hue_handles(colours),
        "certificate": plotting.certificate_handles(mean=True),
    },
)
grid.figure.suptitle(f"{study}: within-class variability of the layer input against λ", y=1.02)
plotting.save(grid.figure, pdf, png, left_out)
runs.pivot_table(index=["dataset", "weight_decay"], columns="layer", values=variability_measure)
