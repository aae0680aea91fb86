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
# In grey, at the headline energy e, the random-initialisation baseline: the MLU of the runs'
# initial weights (untrained; it does not depend on λ), mean over seeds with its 95% t-interval
# across seeds as a band where there are several.

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
import seaborn as sns
from rankcollapse import files, plotting
from rankcollapse.claims.statistics import t_interval

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
# The untrained baseline at the headline energy: one initial network per dataset and seed.
UNTRAINED = "0.55"
baseline_columns = {"init_utilization": "data-driven", "init_svd_utilization": "plain SVD"}
has_baseline = "init_utilization" in runs and runs["init_utilization"].notna().any()
initial = runs[np.isclose(runs["energy"], energy)].drop_duplicates(["dataset", "seed", "layer"])
initial_mlu = (
    initial.groupby(["dataset", "seed"])[list(baseline_columns)].mean().reset_index()
    if has_baseline
    else None
)

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
# The baseline beside: a grey level per method (λ plays no part in it), band its interval.
for dataset, ax in grid.axes_dict.items() if has_baseline else []:
    seeds = initial_mlu[initial_mlu["dataset"] == dataset]
    for column, method in baseline_columns.items():
        mean, low, high = t_interval(seeds[column])
        if not np.isfinite(mean):
            continue
        line = ax.axhline(mean, color=UNTRAINED, linewidth=1.2, zorder=1)
        if methods[method]:
            line.set_dashes(methods[method])
        if np.isfinite(low):
            ax.axhspan(low, high, color=UNTRAINED, alpha=0.15, linewidth=0, zorder=0)
method_handles = {}
for method, dashes in methods.items():
    method_handles[method] = plt.Line2D([], [], color="0.35")
    if dashes:
        method_handles[method].set_dashes(dashes)
sections = {
    "e": plotting.hue_handles(colours),
    "method": method_handles,
    "certificate": plotting.certificate_handles(mean=True),
}
if has_baseline:
    sections["baseline"] = {
        f"untrained (initial weights), e = {energy:g}, mean ± 95% CI over seeds": plt.Line2D(
            [], [], color=UNTRAINED
        )
    }
plotting.legend(grid, sections)
for ax in grid.axes.flat:
    plotting.wd_axis(ax, runs["weight_decay"].unique())
    ax.set_ylim(0, 1.05)
grid.set_axis_labels(plotting.label("weight_decay"), "mean layer utilization")
grid.figure.suptitle(f"{study}: MLU against weight decay", y=1.04)
plotting.save(grid.figure, pdf, png, left_out)
if has_baseline:
    print(initial_mlu.groupby("dataset")[list(baseline_columns)].mean())  # untrained MLU
mlu.pivot_table(index=["dataset", "weight_decay"], columns="energy", values="utilization")
