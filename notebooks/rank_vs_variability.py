# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Layer rank against the within-class variability of the layer's input
#
# One point per run (λ, dataset), one panel per layer. Neural rank collapse predicts that both
# fall together as the weight decay λ grows. Filled markers: runs certified stationary; hollow:
# runs that are not (λ = 0 never is: there is no stationary point to certify).

# %% tags=["parameters"]
study = "mnist_mlp"
table = "results/tables/mnist_mlp/layers.parquet"
history = "results/tables/mnist_mlp/history.parquet"
spectra = "results/tables/mnist_mlp/spectra.parquet"
pdf = "rank_vs_variability.pdf"
png = "rank_vs_variability.png"
rank_measure = "rank_fro"
variability_measure = "tcv"

# %%
import seaborn as sns
from rankcollapse import files, plotting

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(table))
runs["λ"] = runs["weight_decay"].map(lambda w: f"{w:g}")
order = [f"{w:g}" for w in sorted(runs["weight_decay"].unique())]
print("left out:", left_out or "none")
runs = plotting.with_certificate(runs)
colours = plotting.colours(order, "viridis")

# %%
grid = sns.FacetGrid(
    runs.sort_values("weight_decay"),
    row="dataset",
    col="layer",
    sharex=False,
    sharey=False,
    height=2.8,
    margin_titles=True,
)
# A thin line joins the runs in λ order, so the direction of travel as λ grows is visible.
grid.map_dataframe(
    sns.lineplot, x=variability_measure, y=rank_measure, color="0.7", sort=False, estimator=None
)
grid.map_dataframe(
    plotting.certificate_scatter,
    x=variability_measure,
    y=rank_measure,
    hue="λ",
    hue_order=order,
    palette=colours,
    s=60,
    zorder=3,
    legend=False,
)
for ax in grid.axes.flat:
    plotting.log_axis(ax, "x")
plotting.legend(
    grid,
    {
        "λ": plotting.hue_handles(colours, line=False),
        "certificate": plotting.certificate_handles(),
    },
)
plotting.mark_classes(grid, runs, rank_measure)
grid.set_axis_labels(plotting.label(variability_measure), plotting.label(rank_measure))
grid.figure.suptitle(f"{study}: rank against within-class variability", y=1.02)
plotting.save(grid.figure, pdf, png, left_out)
runs.pivot_table(index=["dataset", "weight_decay"], columns="layer", values=rank_measure)
