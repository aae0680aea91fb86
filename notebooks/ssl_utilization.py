# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Utilization after self-supervised pre-training, supervised training and none (claim U6)
#
# Left: utilization r / min(d_in, d_out) of every measured layer at the headline energy e for
# the network pre-trained without labels (SimCLR, then a linear probe), the same network
# trained supervised from the same seeds, and its initial weights (untrained); mean over seeds,
# bars the 95% t-interval across seeds. Right: the mean layer utilization (MLU) of each, with
# the same intervals, and the test accuracies (linear probe, after fine-tuning, supervised).

# %% tags=["parameters"]
study = "tiny_simclr"
compared_with = "tiny"
pretrained = "results/tables/tiny_simclr/utilization.parquet"
supervised = "results/tables/tiny/utilization.parquet"
pdf = "figure.pdf"
png = "figure.png"
energy = 0.99

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from rankcollapse import files, plotting
from rankcollapse.claims.statistics import t_interval

plotting.set_style()
pretrained_table = files.read_table(pretrained)
supervised_table = files.read_table(supervised)
# Only the supervised runs of the datasets the pre-trained study has are compared.
compared = supervised_table["dataset"].isin(pretrained_table["dataset"].unique())
tables = {
    "pre-trained (SimCLR + linear probe)": pretrained_table,
    "supervised": supervised_table[compared],
}
runs, left_out = {}, []
for kind, table in tables.items():
    finished, dropped = plotting.finished_runs(table)
    runs[kind] = finished[np.isclose(finished["energy"], energy)]
    left_out += dropped
print("left out:", left_out or "none")
# Compared run for run: the seeds, datasets and λ both studies finished.
keys = ["dataset", "weight_decay", "seed"]
common = pd.merge(*(r[keys].drop_duplicates() for r in runs.values()), on=keys)
runs = {kind: r.merge(common, on=keys) for kind, r in runs.items()}
# The untrained network of a seed is the same for both studies: taken from the supervised runs.
untrained = runs["supervised"].assign(utilization=runs["supervised"]["init_utilization"])
runs["untrained (initial weights)"] = untrained
colours = dict(zip(runs, ["tab:orange", "tab:blue", "0.55"], strict=True))

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=[2.2, 1])
labels = (
    runs["supervised"].sort_values("position").drop_duplicates("position")
    .assign(label=lambda r: r["layer"] + " " + r["kind"])["label"].tolist()
)  # fmt: skip
summary = []
for offset, (kind, r) in zip((-0.15, 0, 0.15), runs.items(), strict=True):
    per_layer = [(p, *t_interval(g["utilization"])) for p, g in r.groupby("position")]
    if per_layer:
        p, mean, low, high = map(np.array, zip(*per_layer, strict=True))
        bars = np.where(np.isfinite(low), [mean - low, high - mean], 0)
        left.errorbar(p + offset, mean, yerr=bars, color=colours[kind], marker="o", ms=4,
                      capsize=2, label=kind)  # fmt: skip
    mlu = r.groupby(keys)["utilization"].mean()
    mean, low, high = t_interval(mlu)
    summary.append({"network": kind, "runs": len(mlu), "MLU": mean, "low": low, "high": high})
summary = pd.DataFrame(summary)
left.set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right")
left.set_ylim(0, 1.05)
left.set_xlabel("layer")
left.set_ylabel(f"utilization at e = {energy:g}")
left.legend(fontsize=7, loc="upper left")
for i, row in summary.iterrows():
    bar = [[row.MLU - row.low], [row.high - row.MLU]] if np.isfinite(row.low) else None
    right.errorbar([i], [row.MLU], yerr=bar, color=colours[row.network], marker="s", capsize=3)
right.set_xticks(range(len(summary)), ["SimCLR", "supervised", "untrained"], rotation=30)
right.set_xlim(-0.5, len(summary) - 0.5)
right.set_ylim(0, 1.05)
right.set_ylabel("MLU, mean ± 95% CI over seeds")
accuracy = {
    "probe": runs["pre-trained (SimCLR + linear probe)"].groupby(keys)["test_acc"].first().mean(),
    "fine-tuned": runs["pre-trained (SimCLR + linear probe)"]
    .groupby(keys)["finetune_test_acc"].first().mean(),
    "supervised": runs["supervised"].groupby(keys)["test_acc"].first().mean(),
}  # fmt: skip
right.set_title(
    "test accuracy: " + ", ".join(f"{k} {v:.1%}" for k, v in accuracy.items()), fontsize=7
)
fig.suptitle(f"{study} against {compared_with}: utilization (claim U6)", y=1.02)
plotting.save(fig, pdf, png, left_out)
summary.assign(**{f"{k} test acc": v for k, v in accuracy.items()})
