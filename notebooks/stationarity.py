# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Which runs are stationary, and how much of each layer is still its initialisation
#
# Top row: the relative stationarity residual ‖R_l‖_F / (λ‖W_l‖_F) of every measured layer,
# R_l = ∂F/∂W_l the gradient of the full-batch objective in its weight (log scale), against the
# weight decay λ; the dashed line is the tolerance of the certificate. A run is certified
# stationary when every one of its layers is at or below that line: filled markers. Only those
# runs are at a stationary point of F, where the bound on the distance to rank K holds with a
# residual part ‖R_l‖/λ of at most tol·‖W_l‖, so they are the runs the claims can rest on;
# hollow markers are runs that are not certified. At λ = 0 there is nothing to certify (with
# cross-entropy F has no stationary point at finite weights; the residual is undefined, so the
# top row has no point there) and those runs are always hollow.
#
# Bottom row: init_share = ⟨W_l, W₀⟩_F / ‖W₀‖_F², how much of each weight matrix is still its
# initial matrix W₀ (regenerated from the seed): 1 untrained, 0 none of it left. The grey
# dash-dotted line is exp(−λ Σ_t η_t / (1 − β)), what weight decay alone would leave after the
# run's SGD schedule. A random W₀ has full rank, so a layer with a large init_share carries a
# full-rank part that training has not removed: its measured rank says as much about the
# initialisation as about the solution. A value above 1 means training grew the component
# along W₀. Columns: datasets; one colour per layer, one marker per run (the seeds share an x
# position), the line joins the mean over seeds.

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
runs = plotting.with_certificate(runs)
run_key = ["dataset", "weight_decay", "seed"]
datasets = sorted(runs["dataset"].unique())
layers = runs.sort_values("layer_index")["layer"].unique()
colours = plotting.colours(layers)
tolerances = sorted(float(t) for t in runs["stationarity_tol"].dropna().unique())
print("stationarity tolerance:", tolerances)
certified = runs.drop_duplicates(run_key).groupby(["dataset", "weight_decay"])["certificate"]
print("certified runs per dataset and λ:")
print(certified.agg(lambda c: f"{c.eq(plotting.CERTIFIED).sum()}/{len(c)}").unstack().to_string())

measures = {
    "rel_residual": "‖R_l‖ / ‖λW_l‖",
    "init_share": "init_share  ⟨W, W₀⟩ / ‖W₀‖²",
}
long = runs.melt(
    id_vars=[*run_key, "layer", "certificate"],
    value_vars=list(measures),
    var_name="measure",
    value_name="value",
).dropna(subset=["value"])
# What weight decay alone would leave of W₀, per dataset and λ (the same for every seed).
alone = (
    runs.groupby(["dataset", "weight_decay"])["decay_exponent"]
    .mean()
    .pipe(lambda h: np.exp(-h))
    .rename("alone")
    .reset_index()
)

# %%
grid = sns.relplot(
    data=long,
    x="weight_decay",
    y="value",
    hue="layer",
    hue_order=layers,
    palette=colours,
    row="measure",
    row_order=list(measures),
    col="dataset",
    col_order=datasets,
    kind="line",
    errorbar=None,
    linewidth=1,
    facet_kws={"sharey": False, "margin_titles": True},
    height=2.8,
    aspect=1.3,
    legend=False,
)
grid.map_dataframe(
    plotting.certificate_scatter,
    x="weight_decay",
    y="value",
    hue="layer",
    hue_order=layers,
    palette=colours,
    s=40,
    zorder=3,
    legend=False,
)
for (measure, dataset), ax in grid.axes_dict.items():
    plotting.wd_axis(ax, runs["weight_decay"].unique())
    if not ax.has_data():
        why = " (undefined at λ = 0)" if measure == "rel_residual" else ""
        ax.text(0.5, 0.5, f"no values{why}", transform=ax.transAxes, ha="center", va="center")
        continue
    if measure == "rel_residual":
        for tol in tolerances:
            ax.axhline(tol, color="0.3", linestyle="--", linewidth=1)
        plotting.log_axis(ax, "y")
    else:
        line = alone[alone["dataset"] == dataset].sort_values("weight_decay")
        ax.plot(line["weight_decay"], line["alone"], color="0.4", linestyle="-.", linewidth=1)
grid.set_titles(row_template="", col_template="{col_name}")
for measure, axes in zip(measures, grid.axes, strict=True):
    axes[0].set_ylabel(measures[measure])
grid.set_xlabels(plotting.label("weight_decay"))
references = {
    "weight decay alone\nexp(−λΣη/(1−β))": plt.Line2D(
        [], [], color="0.4", linestyle="-.", linewidth=1
    ),
}
if tolerances:
    tolerance = plt.Line2D([], [], color="0.3", linestyle="--", linewidth=1)
    references = {f"tolerance {', '.join(f'{t:g}' for t in tolerances)}": tolerance, **references}
plotting.legend(
    grid,
    {
        "layer": plotting.hue_handles(colours),
        "certificate": plotting.certificate_handles(),
        "": references,
    },
)
grid.figure.suptitle(f"{study}: stationarity residual and initial matrix left, per layer", y=1.02)
plotting.save(grid.figure, pdf, png, left_out)
# Per run: its certificate and, per layer, the share of its initial matrix left.
share = runs.pivot_table(index=run_key, columns="layer", values="init_share")
certificate = ["certificate", "certified_rel_residual", "convergence_steps", "stop_reason"]
runs.drop_duplicates(run_key).set_index(run_key)[certificate].join(
    share.add_prefix("init_share ")
).sort_index()
