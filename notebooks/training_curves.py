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
# Rows: the full-batch training loss without the penalty, (1/N) Σ_i ℓ_i (log scale); the
# objective F(θ) = (1/N) Σ_i ℓ_i + (λ/2)‖θ‖² that the convergence phase minimises (log scale;
# equal to the loss at λ = 0); the training accuracy (running accuracy over each SGD epoch);
# and the stationarity residual max_l ‖R_l‖ / ‖λW_l‖ of the worst measured layer (log scale;
# undefined at λ = 0, so that run has no line there), with the tolerance of the certificate
# as a dashed line: a run whose last point is at or below it is certified stationary.
# Columns: datasets. One line per weight decay λ (mean over seeds, band: range across seeds;
# a t-interval of three seeds would reach below zero on these log axes). The x axis counts
# SGD epochs, then, right of the dotted line, the iterations of the convergence phase (L-BFGS
# on the full-batch objective): iteration k sits at the last SGD epoch + k. A run with a
# shorter SGD phase than the longest one (e.g. with a decay horizon) starts its L-BFGS
# iterations at the dotted line all the same.

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
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator
from rankcollapse import files, plotting

plotting.set_style()
hist, left_out = plotting.finished_runs(files.read_table(history))
print("left out:", left_out or "none")
hist["λ"] = hist["weight_decay"].map(lambda w: f"{w:g}")
order = [f"{w:g}" for w in sorted(hist["weight_decay"].unique())]
# One x axis for both phases: SGD epochs, then the L-BFGS iterations, iteration k at (last SGD
# epoch + k). Squeezing the phase into one epoch's width would hide it on long runs; separate
# panels would leave the accuracy row empty there. "Last" is the longest SGD phase of the table,
# so that the dotted line parts the phases of every run, whatever its number of epochs.
run_key = ["dataset", "weight_decay", "seed"]
sgd = hist["phase"] == "sgd"
convergence = hist["phase"] == "convergence"
# A table with no SGD epochs at all (epochs: 0) starts the convergence phase at 0.
switch = hist.loc[sgd, "epoch"].max() if sgd.any() else 0
hist["pass"] = hist["epoch"] + convergence * switch
print("records per phase:", hist["phase"].value_counts().to_dict())
tolerances = sorted(float(t) for t in hist["stationarity_tol"].dropna().unique())
print("stationarity tolerance:", tolerances)

# The loss without the penalty, (1/N) Σ_i ℓ_i, and the objective the convergence phase
# minimises, F(θ) = (1/N) Σ_i ℓ_i + (λ/2)‖θ‖² (the same at λ = 0).
metrics = {
    "full_loss": "loss (1/N) Σ ℓ_i",
    "full_objective": "F(θ) = loss + (λ/2)‖θ‖²",
    "train_acc": "training accuracy",
    "rel_residual_max": "max_l ‖R_l‖ / ‖λW_l‖",
}
log_scale = {"full_loss", "full_objective", "rel_residual_max"}
long = hist.melt(
    id_vars=[*run_key, "λ", "pass"],
    value_vars=list(metrics),
    var_name="metric",
    value_name="value",
).dropna(subset=["value"])
colours = plotting.colours(order, "viridis")

# %%
grid = sns.relplot(
    data=long,
    x="pass",
    y="value",
    hue="λ",
    hue_order=order,
    palette=colours,
    row="metric",
    row_order=list(metrics),
    col="dataset",
    kind="line",
    errorbar=("pi", 100),
    facet_kws={"sharey": False, "margin_titles": True},
    height=2.4,
    aspect=1.4,
    legend=False,
)
# Ticks right of the dotted line are labelled with the L-BFGS iteration they stand for.
ticks = FuncFormatter(lambda x, _: f"{x:g}" if x <= switch else f"{x - switch:g}")
for (metric, dataset), ax in grid.axes_dict.items():
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(ticks)
    if long[(long["metric"] == metric) & (long["dataset"] == dataset)].empty:
        why = " (undefined at λ = 0)" if metric == "rel_residual_max" else ""
        ax.text(0.5, 0.5, f"no values{why}", transform=ax.transAxes, ha="center", va="center")
    elif metric == "rel_residual_max":
        for tol in tolerances:
            ax.axhline(tol, color="0.3", linestyle="--", linewidth=1)
    if metric in log_scale and ax.has_data():
        plotting.log_axis(ax, "y")
    if convergence.any():
        ax.axvline(switch, color="0.4", linestyle=":", linewidth=1)
if convergence.any():
    # The accuracy row is empty right of the line (no accuracy in that phase): the label goes there.
    for ax in grid.axes[list(metrics).index("train_acc")]:
        ax.text(switch, 0.05, " L-BFGS →", transform=ax.get_xaxis_transform(), fontsize=8)
grid.set_titles(row_template="", col_template="{col_name}")
for metric, axes in zip(metrics, grid.axes, strict=True):
    axes[0].set_ylabel(metrics[metric])
grid.set_xlabels("SGD epoch, then L-BFGS iteration" if convergence.any() else "SGD epoch")
tolerance = Line2D([], [], color="0.3", linestyle="--", linewidth=1)
references = {f"tolerance {', '.join(f'{t:g}' for t in tolerances)}": tolerance}
plotting.legend(
    grid,
    {"λ": plotting.hue_handles(colours, marker=None), "": references if tolerances else {}},
)
grid.figure.suptitle(f"{study}: training curves", y=1.02)
plotting.save(grid.figure, pdf, png, left_out)
# The last record of each run (where it ended), its last SGD accuracy, and its certificate.
last = hist.sort_values("pass").groupby(run_key).tail(1).set_index(run_key)
ended = ["phase", "epoch", "full_loss", "residual", "rel_residual", "rel_residual_max"]
certificate = [
    "stationary",
    "certified_rel_residual",
    "stationarity_tol",
    "convergence_steps",
    "stop_reason",
]
accuracy = hist[sgd].sort_values("pass").groupby(run_key)["train_acc"].last()
last[ended].join(accuracy).join(last[certificate]).sort_index()
