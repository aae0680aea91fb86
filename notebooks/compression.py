# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Accuracy against the fraction of parameters kept
#
# Every layer whose utilized rank r saves parameters (r (d_in + d_out) < d_in d_out) is
# replaced by two layers of inner width r: data-driven (factors of P_T W P_S) or plain SVD
# (factors of the rank-r truncation of W, the same ranks). Test accuracy before (open markers)
# and after (filled) the same fine-tuning, one point per run and compression energy; below, for
# a sweep of several λ, the accuracy after fine-tuning against λ. The grey line is the
# uncompressed accuracy (mean over runs).

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
rows, left_out = plotting.finished_runs(files.read_table(compression))
print("left out:", left_out or "none")
rows["method"] = rows["method"].map({"data_driven": "data-driven", "svd": "plain SVD"})
rows["series"] = rows["method"] + ", " + rows["stage"] + " fine-tuning"
datasets = sorted(rows["dataset"].unique())
colours = dict(zip(["data-driven", "plain SVD"], sns.color_palette("colorblind", 2), strict=True))

# %%
# The panel against λ only for a sweep of several λ.
sweep = rows["weight_decay"].nunique() > 1
fig, axes = plt.subplots(
    1 + sweep,
    len(datasets),
    figsize=(4.2 * len(datasets), 6.6 if sweep else 3.6),
    squeeze=False,
    layout="constrained",
)
for column, dataset in enumerate(datasets):
    sub = rows[rows["dataset"] == dataset]
    top = axes[0][column]
    for (method, stage), group in sub.groupby(["method", "stage"]):
        top.scatter(
            group["param_fraction"],
            group["test_acc"],
            label=f"{method}, {stage} fine-tuning",
            edgecolors=colours[method],
            facecolors=colours[method] if stage == "after" else "none",
            marker="o" if method == "data-driven" else "s",
            s=36,
        )
    top.axhline(sub["original_test_acc"].mean(), color="0.5", linestyle="--", linewidth=0.8)
    top.set_ylabel("test accuracy")
    top.set_title(dataset)
    top.set_xlabel("fraction of parameters kept")
    if not sweep:
        continue
    # Below: accuracy after fine-tuning against λ, one line per method and energy.
    bottom = axes[1][column]
    after = sub[sub["stage"] == "after"].sort_values("weight_decay")
    for (method, energy_), group in after.groupby(["method", "energy"]):
        bottom.plot(
            group["weight_decay"],
            group["test_acc"],
            label=f"{method}, e = {energy_:g}",
            color=colours[method],
            marker="o" if method == "data-driven" else "s",
            linestyle="-" if energy_ == after["energy"].max() else ":",
        )
    bottom.axhline(sub["original_test_acc"].mean(), color="0.5", linestyle="--", linewidth=0.8)
    bottom.set_ylabel("test accuracy")
    plotting.wd_axis(bottom, after["weight_decay"].unique())
axes[0][-1].legend(fontsize=7, loc="lower right")
if sweep:
    axes[1][-1].legend(fontsize=7, loc="lower left")
fig.suptitle(f"{study}: compression to the utilized rank")
plotting.save(fig, pdf, png, left_out)
table = rows.pivot_table(
    index=["dataset", "weight_decay", "energy", "param_fraction"],
    columns=["method", "stage"],
    values="test_acc",
)
table.round(4)
