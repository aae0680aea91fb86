# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Layer rank against the weight decay λ
#
# One panel per layer; one line per dataset (mean over seeds, band: range across seeds). A
# filled marker: every seed of that dataset and λ is certified stationary; hollow: at least one
# is not (λ = 0 never is: there is no stationary point to certify).

# %% tags=["parameters"]
study = "mnist_mlp"
table = "results/tables/mnist_mlp/layers.parquet"
history = "results/tables/mnist_mlp/history.parquet"
spectra = "results/tables/mnist_mlp/spectra.parquet"
pdf = "rank_vs_weight_decay.pdf"
png = "rank_vs_weight_decay.png"
rank_measure = "rank_fro"
variability_measure = "tcv"

# %%
import seaborn as sns
from rankcollapse import files, plotting

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(table))
print("left out:", left_out or "none")
runs = plotting.with_certificate(runs)
datasets = sorted(runs["dataset"].unique())
colours = plotting.colours(datasets)

# %%
grid = sns.relplot(
    data=runs,
    x="weight_decay",
    y=rank_measure,
    hue="dataset",
    hue_order=datasets,
    palette=colours,
    col="layer",
    kind="line",
    errorbar=("pi", 100),
    facet_kws={"sharey": False},
    height=3,
    legend=False,
)
# The markers: at the mean over seeds, as the line, hollow unless every seed is certified.
grid.map_dataframe(
    plotting.certificate_scatter,
    x="weight_decay",
    y=rank_measure,
    mean=True,
    hue="dataset",
    hue_order=datasets,
    palette=colours,
    s=36,
    zorder=3,
    legend=False,
)
for ax in grid.axes.flat:
    plotting.wd_axis(ax, runs["weight_decay"].unique())
plotting.mark_classes(grid, runs, rank_measure)
plotting.legend(
    grid,
    {
        "dataset": plotting.hue_handles(colours),
        "certificate": plotting.certificate_handles(mean=True),
    },
)
grid.set_axis_labels(plotting.label("weight_decay"), plotting.label(rank_measure))
grid.figure.suptitle(f"{study}: rank against weight decay", y=1.03)
plotting.save(grid.figure, pdf, png, left_out)
runs.pivot_table(index=["dataset", "weight_decay"], columns="layer", values=rank_measure)
