# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Mean layer utilization (MLU) against the weight decay λ
#
# MLU = mean over the measured layers of r / min(d_in, d_out), one line per energy e; solid:
# data-driven utilized rank, dashed: plain-SVD rank of W at the same energy. Mean over seeds,
# band: range across seeds. Claim U5: utilization falls as λ grows. A filled marker: every seed
# of that dataset and λ is certified stationary; hollow: at least one is not (λ = 0 never is).

# %% tags=["parameters"]
study = "tiny"
utilization = "results/tables/tiny/utilization.parquet"
compression = "results/tables/tiny/compression.parquet"
pdf = "figure.pdf"
png = "figure.png"
energy = 0.99

# %%
import matplotlib.pyplot as plt
import seaborn as sns
from rankcollapse import files, plotting

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(utilization))
print("left out:", left_out or "none")
runs = plotting.with_certificate(runs)
# The certificate is one per run, so grouping by it too keeps it.
keys = ["dataset", "weight_decay", "seed", "energy", "certificate"]
mlu = runs.groupby(keys)[["utilization", "svd_utilization"]].mean().reset_index()
long = mlu.melt(
    id_vars=keys,
    value_vars=["utilization", "svd_utilization"],
    var_name="method",
    value_name="MLU",
)
long["method"] = long["method"].map({"utilization": "data-driven", "svd_utilization": "plain SVD"})
long["e"] = long["energy"].map(lambda e: f"{e:g}")
energies = [f"{e:g}" for e in sorted(long["energy"].unique())]
colours = plotting.colours(energies)
methods = {"data-driven": "", "plain SVD": (4, 1.5)}

# %%
grid = sns.relplot(
    data=long,
    x="weight_decay",
    y="MLU",
    hue="e",
    hue_order=energies,
    palette=colours,
    style="method",
    style_order=list(methods),
    dashes=methods,
    col="dataset",
    kind="line",
    errorbar=("pi", 100),
    height=3.2,
    aspect=1.2,
    legend=False,
)
# The markers: at the mean over seeds, as the lines, hollow unless every seed is certified.
grid.map_dataframe(
    plotting.certificate_scatter,
    x="weight_decay",
    y="MLU",
    mean=True,
    by=["method"],
    hue="e",
    hue_order=energies,
    palette=colours,
    s=30,
    zorder=3,
    legend=False,
)
method_handles = {}
for method, dashes in methods.items():
    method_handles[method] = plt.Line2D([], [], color="0.35")
    if dashes:
        method_handles[method].set_dashes(dashes)
plotting.legend(
    grid,
    {
        "e": plotting.hue_handles(colours),
        "method": method_handles,
        "certificate": plotting.certificate_handles(mean=True),
    },
)
for ax in grid.axes.flat:
    plotting.wd_axis(ax, runs["weight_decay"].unique())
    ax.set_ylim(0, 1.05)
grid.set_axis_labels(plotting.label("weight_decay"), "mean layer utilization")
grid.figure.suptitle(f"{study}: MLU against weight decay", y=1.04)
plotting.save(grid.figure, pdf, png, left_out)
mlu.pivot_table(index=["dataset", "weight_decay"], columns="energy", values="utilization")
