"""The one figure style of the project, and the helpers the figure notebooks share."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

LABELS = {
    "rank_fro": "rank  #{σ_j > 10⁻³‖W‖_F}",
    "stable_rank": "stable rank ‖W‖_F²/σ₁²",
    "effective_rank": "effective rank",
    "tcv": "TCV of layer input  Σ_i‖z_i − μ_c‖",
    "ss_within": "SS_W of layer input",
    "ss_ratio": "SS_W / SS_total of layer input",
    "nc1": "NC1 of layer input",
    "cdnv": "CDNV of layer input",
    "weight_decay": "weight decay λ",
}


def label(column: str) -> str:
    """Axis label of a table column."""
    if column.startswith("rank_eps_"):
        return f"rank  #{{σ_j > {column.removeprefix('rank_eps_')} σ₁}}"
    return LABELS.get(column, column)


def set_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)


def finished_runs(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows of finished runs, and a description of each run left out (diverged, ...)."""
    ok = table["status"] == "finished"
    columns = ["dataset", "weight_decay", "seed", "status", "reason"]
    dropped = table.loc[~ok, columns].drop_duplicates()
    notes = [
        f"{r.dataset} λ={r.weight_decay:g} seed {r.seed}: {r.status} ({r.reason})"
        for r in dropped.itertuples()
    ]
    return table[ok].copy(), notes


def wd_axis(ax, weight_decays) -> None:
    """Symmetric-log λ axis, so λ = 0 sits beside the log-spaced grid."""
    positive = np.asarray([w for w in weight_decays if w > 0])
    if positive.size:
        ax.set_xscale("symlog", linthresh=positive.min())
    ax.set_xlim(left=0)
    ax.set_xlabel(label("weight_decay"))


def mark_classes(grid, runs: pd.DataFrame, rank_measure: str) -> None:
    """A dashed line at K, the rank the theory expects at large λ, on each panel of a rank
    measure that counts singular values.
    """
    if rank_measure in ("stable_rank", "effective_rank"):
        return
    for ax in grid.axes.flat:
        ax.axhline(runs["classes"].max(), color="0.4", linestyle="--", linewidth=0.8)


def log_axis(ax, which: str) -> None:
    """Log scale without crowded minor labels: powers of ten, and also 2× and 5× them on
    ranges of less than two decades. Call it after plotting, when the limits are known.
    """
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    low, high = getattr(ax, f"get_{which}lim")()
    short = low > 0 and np.log10(high / low) < 2
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,)))
    axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
    axis.set_minor_formatter(NullFormatter())


def save(fig, pdf: str, png: str, left_out: list[str] = ()) -> None:
    """Write the figure as PDF and PNG, with a footnote naming the runs left out of it."""
    if left_out:
        note = f"Left out ({len(left_out)} runs that did not finish): " + "; ".join(left_out)
        fig.text(0.01, -0.02, note, ha="left", va="top", fontsize=7, wrap=True)
    for path in (pdf, png):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(pdf, bbox_inches="tight")
    fig.savefig(png, bbox_inches="tight", dpi=150)
    plt.close(fig)
