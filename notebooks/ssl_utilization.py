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
# One row per dataset and λ. Left: utilization r / min(d_in, d_out) of every measured layer at
# the headline energy e for the network pre-trained without labels (SimCLR, then a linear
# probe), the same network trained supervised from the same seeds, and its initial weights
# (untrained); mean over seeds, bars the 95% t-interval across seeds. Right: the mean layer
# utilization (MLU) of each, with the same intervals, and the test accuracies (linear probe,
# after fine-tuning, supervised).

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
PRETRAINED, SUPERVISED, UNTRAINED = "pre-trained (SimCLR + linear probe)", "supervised", "untrained"
pretrained_table = files.read_table(pretrained)
supervised_table = files.read_table(supervised)
# Only the supervised runs of the datasets the pre-trained study has are compared.
compared = supervised_table["dataset"].isin(pretrained_table["dataset"].unique())
runs, left_out = {}, []
for kind, table in ((PRETRAINED, pretrained_table), (SUPERVISED, supervised_table[compared])):
    finished, dropped = plotting.finished_runs(table)
    at_e = np.isclose(finished["energy"], energy) if "energy" in finished else []
    runs[kind] = finished[at_e] if len(finished) else finished
    left_out += dropped
print("left out:", left_out or "none")
# Compared run for run: the seeds of each (dataset, λ) that both studies finished.
keys = ["dataset", "weight_decay", "seed"]
common = (
    pd.merge(*(r[keys].drop_duplicates() for r in runs.values()), on=keys)
    if all(set(keys) <= set(r) for r in runs.values())
    else pd.DataFrame(columns=keys)
)
runs = {kind: r.merge(common, on=keys) for kind, r in runs.items()}
# The untrained network of a seed is the same for both studies: taken from the supervised runs.
if not common.empty:
    runs[UNTRAINED] = runs[SUPERVISED].assign(utilization=runs[SUPERVISED]["init_utilization"])
colours = {PRETRAINED: "tab:orange", SUPERVISED: "tab:blue", UNTRAINED: "0.55"}
groups = (
    common[["dataset", "weight_decay"]].drop_duplicates().sort_values(["dataset", "weight_decay"])
)

# %%
# One row per (dataset, λ): the layers on the left, the MLU on the right.
rows = max(len(groups), 1)
fig, axes = plt.subplots(rows, 2, figsize=(10, 3.6 * rows), width_ratios=[2.2, 1], squeeze=False)
summary = []
if groups.empty:
    axes[0, 0].text(0.5, 0.5, "no pair of finished runs to compare", ha="center", va="center")
for (left, right), group in zip(axes, groups.itertuples(), strict=False):
    chosen = {
        kind: r[(r["dataset"] == group.dataset) & (r["weight_decay"] == group.weight_decay)]
        for kind, r in runs.items()
    }
    labels = (
        chosen[SUPERVISED].sort_values("position").drop_duplicates("position")
        .assign(label=lambda r: r["layer"] + " " + r["kind"])["label"].tolist()
    )  # fmt: skip
    for i, (offset, (kind, r)) in enumerate(zip((-0.15, 0, 0.15), chosen.items(), strict=True)):
        per_layer = [(p, *t_interval(g["utilization"])) for p, g in r.groupby("position")]
        p, mean, low, high = map(np.array, zip(*per_layer, strict=True))
        bars = np.where(np.isfinite(low), [mean - low, high - mean], 0)
        left.errorbar(p + offset, mean, yerr=bars, color=colours[kind], marker="o", ms=4,
                      capsize=2, label=kind)  # fmt: skip
        mlu_mean, mlu_low, mlu_high = t_interval(r.groupby(keys)["utilization"].mean())
        bar = [[mlu_mean - mlu_low], [mlu_high - mlu_mean]] if np.isfinite(mlu_low) else None
        right.errorbar([i], [mlu_mean], yerr=bar, color=colours[kind], marker="s", capsize=3)
        summary.append(
            {"dataset": group.dataset, "λ": group.weight_decay, "network": kind,
             "runs": r["seed"].nunique(), "MLU": mlu_mean, "low": mlu_low, "high": mlu_high}
        )  # fmt: skip
    accuracy = {
        "probe": chosen[PRETRAINED].groupby(keys)["test_acc"].first().mean(),
        "fine-tuned": chosen[PRETRAINED].groupby(keys)["finetune_test_acc"].first().mean(),
        "supervised": chosen[SUPERVISED].groupby(keys)["test_acc"].first().mean(),
    }
    left.set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right")
    left.set_ylim(0, 1.05)
    left.set_xlabel("layer")
    left.set_ylabel(f"utilization at e = {energy:g}")
    left.set_title(f"{group.dataset}, λ = {group.weight_decay:g}", fontsize=9)
    left.legend(fontsize=7, loc="upper left")
    right.set_xticks(range(len(chosen)), ["SimCLR", "supervised", "untrained"], rotation=30)
    right.set_xlim(-0.5, len(chosen) - 0.5)
    right.set_ylim(0, 1.05)
    right.set_ylabel("MLU, mean ± 95% CI over seeds")
    right.set_title(
        "test accuracy: " + ", ".join(f"{k} {v:.1%}" for k, v in accuracy.items()), fontsize=7
    )
fig.suptitle(f"{study} against {compared_with}: utilization (claim U6)", y=1.02)
plotting.save(fig, pdf, png, left_out)
pd.DataFrame(summary)
