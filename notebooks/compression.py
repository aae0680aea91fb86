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
# and after (filled) the same fine-tuning, one point per run and compression energy; the grey
# line is the uncompressed accuracy (mean over runs), the numbers beside points the λ.

# %% tags=["parameters"]
study = "tiny"
utilization = "results/tables/tiny/utilization.parquet"
compression = "results/tables/tiny/compression.parquet"
pdf = "figure.pdf"
png = "figure.png"
energy = 0.99

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from rankcollapse import plotting

plotting.set_style()
rows, left_out = plotting.finished_runs(pd.read_parquet(compression))
print("left out:", left_out or "none")
rows["method"] = rows["method"].map({"data_driven": "data-driven", "svd": "plain SVD"})
rows["series"] = rows["method"] + ", " + rows["stage"] + " fine-tuning"
datasets = sorted(rows["dataset"].unique())
colours = dict(zip(["data-driven", "plain SVD"], sns.color_palette("colorblind", 2), strict=True))

# %%
fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
for ax, dataset in zip(axes[0], datasets, strict=True):
    sub = rows[rows["dataset"] == dataset]
    for (method, stage), group in sub.groupby(["method", "stage"]):
        ax.scatter(
            group["param_fraction"],
            group["test_acc"],
            label=f"{method}, {stage} fine-tuning",
            edgecolors=colours[method],
            facecolors=colours[method] if stage == "after" else "none",
            marker="o" if method == "data-driven" else "s",
            s=36,
        )
    after = sub[(sub["method"] == "data-driven") & (sub["stage"] == "after")]
    for r in after.itertuples():
        ax.annotate(f"{r.weight_decay:g}", (r.param_fraction, r.test_acc), fontsize=6)
    ax.axhline(sub["original_test_acc"].mean(), color="0.5", linestyle="--", linewidth=0.8)
    ax.set_title(dataset)
    ax.set_xlabel("fraction of parameters kept")
    ax.set_ylabel("test accuracy")
axes[0][-1].legend(fontsize=7, loc="lower right")
fig.suptitle(f"{study}: compression to the utilized rank", y=1.03)
plotting.save(fig, pdf, png, left_out)
table = rows.pivot_table(
    index=["dataset", "weight_decay", "energy", "param_fraction"],
    columns=["method", "stage"],
    values="test_acc",
)
table.round(4)
