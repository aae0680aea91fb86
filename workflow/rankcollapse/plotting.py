"""The one figure style of the project, and the helpers the figure notebooks share."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, MaxNLocator, NullFormatter

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
    "tail_K": "tail_K  (Σ_{j>K} σ_j²)^½",
    "rel_tail_K": "tail_K / ‖W‖_F",
    "sigma_ratio_K": "σ_{K+1} / σ₁",
    "tcv_relative": "TCV / √(N·SS_total) of layer input",
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


def trained_runs(runs: pd.DataFrame, min_train_acc: float) -> tuple[pd.DataFrame, int]:
    """Rows of the runs whose training accuracy reaches ``min_train_acc``, and how many runs
    are left out; every row when no run reaches it (a smoke test draws something).

    A run that does not fit its classes has no K-class structure for the theorem to act on
    (the claims do not count it), and one that collapsed to zero weights has distances to rank
    K near 10⁻⁸⁰, which would squash every other point of a log axis.
    """
    ok = runs["train_acc"] >= min_train_acc
    if not ok.any():
        return runs, 0
    key = ["dataset", "weight_decay", "seed"]
    return runs[ok], len(runs.loc[~ok, key].drop_duplicates())


def not_drawn_note(count: int, min_train_acc: float) -> str:
    """A title's note on the runs :func:`trained_runs` left out ("" if none)."""
    if not count:
        return ""
    return f" ({count} run{'s' * (count != 1)} with train acc < {min_train_acc:g} not drawn)"


# ------------------------------------------------------------------ stationarity certificates
# Every figure that draws runs marks those not certified stationary the same way: a hollow
# marker where a run (or a mean over seeds) is a point, a dashed line where a run is a line.
CERTIFIED = "certified"
NOT_CERTIFIED = "not certified"
CERTIFICATES = [CERTIFIED, NOT_CERTIFIED]
CERTIFICATE_LABELS = {CERTIFIED: "certified stationary", NOT_CERTIFIED: "not certified"}
CERTIFICATE_DASHES = {CERTIFIED: "", NOT_CERTIFIED: (4, 1.5)}
HOLLOW_EDGE_WIDTH = 1.2


def with_certificate(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a column ``certificate``: CERTIFIED on the rows of runs certified
    stationary (``stationary`` True), NOT_CERTIFIED on the others, λ = 0 among them (there is
    no stationary point to certify).
    """
    certified = table["stationary"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    return table.assign(certificate=np.where(certified, CERTIFIED, NOT_CERTIFIED))


def wants_log(*values, decades: float = 1.0) -> bool:
    """Whether an axis of these values should be logarithmic: every finite value positive and
    the largest at least ``decades`` decades above the smallest.
    """
    v = np.concatenate([np.asarray(x, dtype=float).ravel() for x in values])
    v = v[np.isfinite(v)]
    return bool(v.size) and v.min() > 0 and np.log10(v.max() / v.min()) >= decades


def run_lines(ax, rows, *, x, y, by, color, order="layer_index", **kwargs) -> None:
    """One line per run (``rows`` grouped by ``by``, a table with a ``certificate`` column)
    through its rows in ``order`` (its layers), solid if the run is certified stationary,
    dashed if not; ``color`` maps a group key to its colour.
    """
    kwargs = {"linewidth": 0.9, "alpha": 0.8, **kwargs}
    for key, run in rows.dropna(subset=[x, y]).groupby(by, sort=False):
        run = run.sort_values(order)
        (line,) = ax.plot(run[x], run[y], color=color(key), **kwargs)
        if run["certificate"].ne(CERTIFIED).any():
            line.set_dashes(CERTIFICATE_DASHES[NOT_CERTIFIED])


def colours(levels, palette=None) -> dict:
    """A colour per level (seaborn's for that palette and count), as a dict that the lines,
    the markers and the legend of one figure all share.
    """
    levels = list(levels)
    return dict(zip(levels, sns.color_palette(palette, len(levels)), strict=True))


def hollow(points, which) -> None:
    """Draw the markers ``which`` (a boolean per point) of a scatter hollow: no fill, an edge in
    the colour they were filled with.
    """
    n = len(points.get_offsets())
    which = np.asarray(which, dtype=bool)
    face = np.broadcast_to(points.get_facecolors(), (n, 4)).copy()
    edge = np.broadcast_to(points.get_edgecolors(), (n, 4)).copy()
    widths = np.broadcast_to(points.get_linewidths(), (n,)).astype(float)
    edge[which] = face[which]
    face[which, 3] = 0
    widths[which] = HOLLOW_EDGE_WIDTH
    points.set_facecolors(face)
    points.set_edgecolors(edge)
    points.set_linewidths(widths)


def certificate_scatter(data, *, x, y, mean=False, by=(), ax=None, **kwargs):
    """``sns.scatterplot`` of ``data`` (a table with a ``certificate`` column) with the markers
    of runs not certified stationary hollow. With ``mean``, one marker per hue, style, ``by``
    and x value at the mean y (where a seaborn line of the same rows puts its point), filled
    only when every run averaged there is certified. Usable with ``FacetGrid.map_dataframe``.
    Markers are not clipped at the axes' edge (λ = 0 sits on it).
    """
    ax = plt.gca() if ax is None else ax
    kwargs.pop("label", None)
    kwargs.setdefault("clip_on", False)
    keys = [k for k in (kwargs.get("hue"), kwargs.get("style"), *by) if k is not None]
    columns = list(dict.fromkeys([x, y, *keys]))
    # A non-finite value (CDNV of a network whose class means coincide) is no point to draw.
    rows = data.assign(**{c: data[c].replace([np.inf, -np.inf], np.nan) for c in (x, y)})
    rows = rows.dropna(subset=columns)
    if mean:
        groups = rows.groupby([*keys, x], sort=False, observed=True)
        rows = groups.agg(
            **{y: (y, "mean")},
            certificate=(
                "certificate",
                lambda c: CERTIFIED if c.eq(CERTIFIED).all() else NOT_CERTIFIED,
            ),
        ).reset_index()
    if rows.empty:
        return ax
    drawn = len(ax.collections)
    sns.scatterplot(data=rows, x=x, y=y, ax=ax, **kwargs)
    points = ax.collections[drawn]
    if len(points.get_offsets()) != len(rows):
        raise RuntimeError(f"scatter drew {len(points.get_offsets())} of {len(rows)} points")
    hollow(points, rows["certificate"].eq(NOT_CERTIFIED).to_numpy())
    return ax


def certificate_handles(mean=False, marker="o", color="0.35") -> dict:
    """Legend entries saying what filled and hollow markers mean."""
    kw = {"linestyle": "", "marker": marker, "markersize": 6, "color": color}
    return {
        CERTIFICATE_LABELS[CERTIFIED] + (" (every seed)" if mean else ""): Line2D([], [], **kw),
        CERTIFICATE_LABELS[NOT_CERTIFIED] + (" (≥ 1 seed)" if mean else ""): Line2D(
            [], [], **kw, markerfacecolor="none", markeredgewidth=HOLLOW_EDGE_WIDTH
        ),
    }


def certificate_line_handles(color="0.35") -> dict:
    """Legend entries saying what solid and dashed lines mean."""
    lines = {}
    for certificate in CERTIFICATES:
        line = Line2D([], [], color=color)
        if CERTIFICATE_DASHES[certificate]:
            line.set_dashes(CERTIFICATE_DASHES[certificate])
        lines[CERTIFICATE_LABELS[certificate]] = line
    return lines


def certificate_run_handles(mean=False, color="0.35") -> dict:
    """Legend entries for runs drawn as markers joined by a line (:func:`run_lines`): filled
    and solid when certified stationary, hollow and dashed when not.
    """
    markers = certificate_handles(mean=mean, color=color)
    lines = {}
    for (name, marker), certificate in zip(markers.items(), CERTIFICATES, strict=True):
        line = Line2D([], [], color=color, marker="o", markersize=6)
        line.set_markerfacecolor(marker.get_markerfacecolor())
        line.set_markeredgewidth(marker.get_markeredgewidth())
        if CERTIFICATE_DASHES[certificate]:
            line.set_dashes(CERTIFICATE_DASHES[certificate])
        lines[name] = line
    return lines


def hue_handles(palette: dict, marker="o", line=True) -> dict:
    """Legend entries of a hue: one per level, in its colour."""
    style = {"linestyle": "-" if line else "", "marker": marker, "markersize": 5}
    return {f"{level}": Line2D([], [], color=c, **style) for level, c in palette.items()}


def legend(grid, sections: dict) -> None:
    """One legend beside a FacetGrid: each section's entries (label: handle) under its title,
    as seaborn lays out a legend of several semantics; a section titled "" has no title.
    """
    data, order = {}, []
    for title, entries in sections.items():
        if title:
            order.append((f"title:{title}", title))
            data[order[-1]] = Line2D([], [], visible=False)
        for name, handle in entries.items():
            order.append((title, name))
            data[order[-1]] = handle
    grid.add_legend(legend_data=data, label_order=order, title="", adjust_subtitles=True)


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


class LogTicks(LogLocator):
    """Ticks of a log axis, chosen for the limits it has when drawn: powers of ten, and also 2×
    and 5× them on ranges of less than two decades; on a range too narrow to hold two of those,
    a few evenly spaced ticks (matplotlib's own fallback there labels a dozen).
    """

    def tick_values(self, vmin, vmax):
        if 0 < vmin < vmax:
            short = np.log10(vmax / vmin) < 2
            self.set_params(subs=(1.0, 2.0, 5.0) if short else (1.0,))
            decades = 10.0 ** np.arange(np.floor(np.log10(vmin)), np.ceil(np.log10(vmax)) + 1)
            candidates = np.outer(decades, (1.0, 2.0, 5.0)).ravel()
            if short and np.count_nonzero((candidates >= vmin) & (candidates <= vmax)) < 2:
                return MaxNLocator(nbins=3).tick_values(vmin, vmax)
        return super().tick_values(vmin, vmax)


def log_axis(ax, which: str) -> None:
    """Log scale without crowded labels (see :class:`LogTicks`)."""
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogTicks(base=10))
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
