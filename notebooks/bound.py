# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # The measured distance to rank K against the bound
#
# Left: tail_K(W_l) = (Σ_{j>K} σ_j²)^½ against the bound ‖E_l‖_F/(Nλ) + ‖R_l‖_F/λ, log-log,
# every layer of every finished run with λ > 0 (the bound is undefined at λ = 0). Every point
# must lie below the identity line; a point above it is a bug. Right: tail_K against TCV/λ,
# with the least-squares line of log tail_K on log(TCV/λ) per dataset that claim C3(b) judges
# (hidden layers, λ and seeds pooled; the same rows and fit as the claim); a slope near 1 means
# tail_K tracks TCV/λ. Layers whose tail is exactly 0 (e.g. an output layer with d_out = K)
# cannot be drawn on log axes and are left out (counted below). Filled markers: runs certified
# stationary, where ‖R_l‖/λ is at most tol·‖W_l‖; hollow: runs that are not certified.

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
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from rankcollapse import files, plotting
from rankcollapse.claims.statistics import bound_slope_rows, log_log_fit

plotting.set_style()
runs, left_out = plotting.finished_runs(files.read_table(table))
print("left out:", left_out or "none")
runs = plotting.with_certificate(runs[runs["weight_decay"] > 0])

# bound_holds is True/False, or None where there is nothing to check (λ = 0, dropped above).
holds = runs["bound_holds"].astype("boolean")
violated = runs[holds.eq(False).fillna(False)]
print(f"bound checks: {int(holds.notna().sum())}, violations: {len(violated)}")
if len(violated):
    print(violated[["dataset", "weight_decay", "seed", "layer", "tail_K", "bound"]].to_string())

zero = runs["tail_K"] <= 0
print(f"tail_K = 0, left out (log axes): {int(zero.sum())}")
points = runs[~zero].sort_values("layer_index")
layer_order = points["layer"].unique()


fitted = bound_slope_rows(runs)
fits = pd.DataFrame(
    {
        dataset: dict(
            zip(
                ("slope", "intercept"),
                log_log_fit(group["tcv_over_wd"], group["tail_K"]),
                strict=True,
            ),
            points=len(group),
        )
        for dataset, group in fitted.groupby("dataset")
    }
).T.rename_axis("dataset")
print(fits.to_string())

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True, layout="constrained")
if points.empty:
    for ax in (left, right):
        ax.text(0.5, 0.5, "no run with λ > 0 and tail_K > 0", ha="center", va="center")
        ax.set_axis_off()
else:
    style = {
        "hue": "layer",
        "hue_order": layer_order,
        "style": "dataset",
        "style_order": sorted(points["dataset"].unique()),
        "s": 50,
    }
    plotting.certificate_scatter(points, x="bound", y="tail_K", ax=left, **style)
    # Violations are ringed in red, so that a single one cannot hide among the other points.
    if len(violated):
        left.scatter(
            violated["bound"],
            violated["tail_K"],
            s=160,
            facecolors="none",
            edgecolors="red",
            label="bound violated",
        )
    plotting.certificate_scatter(
        points, x="tcv_over_wd", y="tail_K", ax=right, legend=False, **style
    )
    for ax in (left, right):
        plotting.log_axis(ax, "x")
        plotting.log_axis(ax, "y")
    # The identity line spans both axes' data, so a point above it would be plain to see.
    low = min(points["bound"].min(), points["tail_K"].min()) / 2
    high = max(points["bound"].max(), points["tail_K"].max()) * 2
    left.plot([low, high], [low, high], color="0.3", linestyle="--", linewidth=0.9)
    left.set_xlim(low, high)
    # One legend for the points, outside, so it covers none of them.
    handles, labels = left.get_legend_handles_labels()
    left.get_legend().remove()
    handles.append(plt.Line2D([], [], color="0.3", linestyle="--"))
    labels.append("tail_K = bound")
    certificate = plotting.certificate_handles()
    handles += [plt.Line2D([], [], visible=False), *certificate.values()]
    labels += ["certificate", *certificate]
    fig.legend(handles, labels, loc="outside right upper")
    # The fitted lines get a legend of their own in the panel: one per dataset, with its slope.
    fit_handles = []
    for (dataset, fit), dashes in zip(
        fits.iterrows(), [(None, None), (4, 2), (1, 2), (6, 2, 1, 2)] * 10, strict=False
    ):
        if np.isnan(fit["slope"]):
            text = f"{dataset}: slope n/a (< 3 points or one x value)"
            fit_handles.append(plt.Line2D([], [], color="none", label=text))
            continue
        x = fitted.loc[fitted["dataset"] == dataset, "tcv_over_wd"]
        xs = np.geomspace(x.min(), x.max(), 20)
        (line,) = right.plot(
            xs,
            np.exp(fit["intercept"]) * xs ** fit["slope"],
            color="0.2",
            linewidth=1,
            label=f"{dataset}: slope {fit['slope']:.2f}",
        )
        if dashes[0] is not None:
            line.set_dashes(dashes)
        fit_handles.append(line)
    right.legend(handles=fit_handles, title="least-squares fit", fontsize=8, title_fontsize=8)
left.set(xlabel="bound  ‖E‖_F/(Nλ) + ‖R‖_F/λ", ylabel="tail_K  (Σ_{j>K} σ_j²)^½")
left.set_title("tail_K against the bound")
right.set(xlabel="TCV / λ of layer input")
right.set_title("tail_K against TCV/λ")
fig.suptitle(f"{study}: distance to rank K, λ > 0")
plotting.save(fig, pdf, png, left_out)
# Per dataset and layer: checks, violations and the largest tail_K / bound (≤ 1 if it holds).
summary = runs.assign(holds=holds, ratio=runs["tail_K"] / runs["bound"])
summary.groupby(["dataset", "layer"]).agg(
    checks=("holds", "count"),
    violations=("holds", lambda h: int(h.eq(False).sum())),
    max_tail_over_bound=("ratio", "max"),
)
