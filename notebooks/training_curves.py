# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Training curves
#
# Rows: the full-batch training objective F(θ) (log scale), the training accuracy (running
# accuracy over each SGD epoch) and the relative stationarity residual ‖∇F‖ / ‖λθ‖ (log scale;
# undefined at λ = 0, so that run has no line there). Columns: datasets. One line per weight
# decay λ (mean over seeds, band: range across seeds). The x axis counts passes over the
# training set: SGD epochs, then, right of the dotted line, the steps of the final full-batch
# phase if there is one (each computes the gradient over the whole training set).

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
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from rankcollapse import files, plotting

plotting.set_style()
hist, left_out = plotting.finished_runs(files.read_table(history))
print("left out:", left_out or "none")
hist["λ"] = hist["weight_decay"].map(lambda w: f"{w:g}")
order = [f"{w:g}" for w in sorted(hist["weight_decay"].unique())]
# One x axis for both phases: a full-batch step costs one pass over the data, as an epoch does,
# so step k comes at (last epoch + k). Squeezing the phase into one epoch's width (step/steps)
# would hide it on long runs; separate panels would leave the accuracy row empty there.
run_key = ["dataset", "weight_decay", "seed"]
epochs = hist[hist["phase"] == "sgd"].groupby(run_key)["epoch"].max().rename("epochs")
# A run with no SGD epochs (epochs: 0) starts its full-batch phase at 0.
hist = hist.join(epochs, on=run_key).fillna({"epochs": 0})
full_batch = hist["phase"] == "full_batch"
hist["pass"] = hist["epoch"] + full_batch * hist["epochs"]
print("records per phase:", hist["phase"].value_counts().to_dict())

metrics = {
    "full_loss": "full-batch loss F(θ)",
    "train_acc": "training accuracy",
    "rel_residual": "‖∇F‖ / ‖λθ‖",
}
log_scale = {"full_loss", "rel_residual"}
long = hist.melt(
    id_vars=[*run_key, "λ", "pass"],
    value_vars=list(metrics),
    var_name="metric",
    value_name="value",
).dropna(subset=["value"])

# %%
grid = sns.relplot(
    data=long,
    x="pass",
    y="value",
    hue="λ",
    hue_order=order,
    palette="viridis",
    row="metric",
    row_order=list(metrics),
    col="dataset",
    kind="line",
    errorbar=("pi", 100),
    facet_kws={"sharey": False, "margin_titles": True},
    height=2.4,
    aspect=1.4,
)
switch = hist.loc[~full_batch, "pass"].max()
for (metric, dataset), ax in grid.axes_dict.items():
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if long[(long["metric"] == metric) & (long["dataset"] == dataset)].empty:
        why = " (undefined at λ = 0)" if metric == "rel_residual" else ""
        ax.text(0.5, 0.5, f"no values{why}", transform=ax.transAxes, ha="center", va="center")
    if metric in log_scale:
        plotting.log_axis(ax, "y")
    if full_batch.any():
        ax.axvline(switch, color="0.4", linestyle=":", linewidth=1)
if full_batch.any():
    # The accuracy row is empty right of the line (no accuracy in that phase): the label goes there.
    for ax in grid.axes[list(metrics).index("train_acc")]:
        ax.text(switch, 0.05, " full batch →", transform=ax.get_xaxis_transform(), fontsize=8)
grid.set_titles(row_template="", col_template="{col_name}")
for metric, axes in zip(metrics, grid.axes, strict=True):
    axes[0].set_ylabel(metrics[metric])
grid.set_xlabels("passes over the data" if full_batch.any() else "epoch")
grid.figure.suptitle(f"{study}: training curves", y=1.02)
plotting.save(grid.figure, pdf, png, left_out)
# The last record of each run: where it ended.
last = hist.sort_values("pass").groupby(run_key).tail(1)
last.pivot_table(
    index=["dataset", "weight_decay"], values=["full_loss", "residual", "rel_residual"]
).join(
    hist[~full_batch]
    .sort_values("pass")
    .groupby(run_key)
    .tail(1)
    .pivot_table(index=["dataset", "weight_decay"], values="train_acc")
)
