# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Every claim on one page
#
# One row per claim of results/claims.json, in its order. Each counted detail row of the claim
# (a group, a layer, a run: the units its rule decides on) is drawn as its value with its 95%
# interval as an error bar, sorted by value, against the claim's decision line (dashed),
# coloured by its outcome: pass, fail or inconclusive. A claim whose rows carry parts with
# lines of their own (U3's layer error and accuracy drop) gets one axis per part. Rows that
# decide nothing are drawn grey and hollow when they are a control or have too few points, and
# are only counted in the right margin when they are information only. The ringed point is
# the claim's headline, the row its summary quotes. The label gives the claim's id, its
# verdict and n, the runs it counts; the right margin what the values are. A claim with no row
# to draw (not run, not testable at this scale, or a check whose rows are only its failures)
# is a line of text with its statistic. The notebook reads only the records' generic fields
# (id, kind, verdict, n, measure, value, low, high, line, statistic, details with value, low,
# high, outcome and optionally part and line, left_out), so it draws any claim the claims step
# writes.

# %% tags=["parameters"]
claims = "results/claims.json"
pdf = "results/figures/claims_overview.pdf"
png = "results/figures/claims_overview.png"

# %%
import json
import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from rankcollapse import plotting

plotting.set_style()
with open(claims) as f:
    report = json.load(f)
records = report["claims"]

COUNTED = ["pass", "fail", "inconclusive"]
OUTCOME_COLOURS = {"pass": "#009E73", "fail": "#D55E00", "inconclusive": "#E69F00"}
# Rows reported beside a claim that decide nothing: drawn grey and hollow (a control, such as
# layer 1 or untrained weights; a group with too few points), or not drawn (information only,
# not applicable), only counted in the right margin.
BESIDE = "0.55"
NOT_DRAWN = {"information only", "not applicable"}
VERDICT_COLOURS = {
    "holds": OUTCOME_COLOURS["pass"],
    "does not hold": OUTCOME_COLOURS["fail"],
    "inconclusive": OUTCOME_COLOURS["inconclusive"],
}


def number(value) -> float:
    """A JSON number as a float; NaN for null (the claims write NaN as null) or a non-number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def detail_rows(record: dict) -> pd.DataFrame:
    """Every detail row of a claim: value, low, high, outcome, and the decision line and part
    it is read against (a row's own ``line`` and ``part`` where it has them: a claim of
    several parts, each with its own line; else the claim's).
    """
    rows = [
        {
            "value": number(d.get("value")),
            "low": number(d.get("low")),
            "high": number(d.get("high")),
            "outcome": str(d.get("outcome", "")),
            "line": number(d.get("line", record.get("line"))),
            "part": str(d.get("part") or ""),
        }
        for d in record.get("details", [])
    ]
    columns = ["value", "low", "high", "outcome", "line", "part"]
    return pd.DataFrame(rows, columns=columns).astype(
        {"value": float, "low": float, "high": float, "line": float}
    )


def drawn(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows drawn: a finite value, an outcome that is not information only."""
    return rows[np.isfinite(rows["value"]) & ~rows["outcome"].isin(NOT_DRAWN)]


def panels_of(record: dict) -> list[tuple[str, float, pd.DataFrame]]:
    """(part, line, rows) per axis of a claim: one per part (or per decision line) among its
    drawn rows, in order of appearance; one without rows if it has none to draw.
    """
    rows = drawn(detail_rows(record))
    if rows.empty:
        return [("", number(record.get("line")), rows)]
    keys = rows[["part", "line"]].astype(str).agg("|".join, axis=1)
    return [
        (group["part"].iloc[0], group["line"].iloc[0], group)
        for _, group in rows.groupby(keys, sort=False)
    ]


def fmt(value) -> str:
    value = number(value)
    return "—" if not math.isfinite(value) else f"{value:.3g}"


summary = []
for record in records:
    rows = detail_rows(record)
    shown = drawn(rows)
    summary.append(
        {
            "id": record["id"],
            "verdict": record["verdict"],
            "n": record.get("n"),
            **{o: int(rows["outcome"].eq(o).sum()) for o in COUNTED},
            "drawn": int(shown["outcome"].isin(COUNTED).sum()),
            "beside": int((~shown["outcome"].isin(COUNTED)).sum()),
            "not_drawn": len(rows) - len(shown),
            "panels": len(panels_of(record)),
            "value": record.get("value"),
            "line": record.get("line"),
        }
    )
summary = pd.DataFrame(summary)
print(summary.to_string() if len(summary) else "no claims")

# %%
ROW = 0.03  # inches per detail row
panels = [(record, i, *panel) for record in records for i, panel in enumerate(panels_of(record))]
heights = [0.5 if rows.empty else min(0.55 + ROW * len(rows), 2.0) for *_, rows in panels]
fig = plt.figure(figsize=(10, 1.2 + sum(heights) + 0.1 * len(panels)))
if not panels:
    fig.text(0.5, 0.5, f"{claims}: no claims", ha="center", va="center")
    axes = []
else:
    axes = fig.subplots(len(panels), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)
    axes = axes[:, 0]
    fig.subplots_adjust(left=0.2, right=0.76, top=1 - 0.9 / fig.get_figheight(), hspace=0.9)


def label(ax, record: dict) -> None:
    """The claim's id, its verdict and n, and its kind if it is a check of the code, left of
    its first axis.
    """
    colour = VERDICT_COLOURS.get(record["verdict"], "0.35")
    n = record.get("n")
    verdict = record["verdict"] + ("" if n is None else f", n = {n}")
    lines = [(record["id"], {"fontsize": 10, "fontweight": "bold"})]
    lines.append((verdict, {"fontsize": 8, "color": colour}))
    if record.get("kind") == "check of the implementation":
        lines.append(("check of the implementation", {"fontsize": 7, "color": "0.4"}))
    for i, (text, style) in enumerate(lines):
        ax.annotate(text, (0, 1), xycoords="axes fraction", xytext=(-6, -2 - 11 * i),
                    textcoords="offset points", ha="right", va="top", **style)  # fmt: skip


def right_margin(ax, record: dict, first: bool, part: str, line: float) -> None:
    """What the values are and the headline (first axis of a claim), the part and its line
    (a claim of several parts), what was not drawn.
    """
    lines = []
    if first:
        lines.append(record.get("measure") or "")
        if record.get("value") is not None:
            interval = (
                f" [{fmt(record.get('low'))}, {fmt(record.get('high'))}]"
                if record.get("low") is not None or record.get("high") is not None
                else ""
            )
            lines.append(f"headline {fmt(record['value'])}{interval}")
        rows = detail_rows(record)
        unplotted = int((rows["outcome"].isin(COUNTED) & ~np.isfinite(rows["value"])).sum())
        if unplotted:
            lines.append(f"{unplotted} counted without a value")
        beside = int(rows["outcome"].isin(NOT_DRAWN).sum())
        if beside:
            lines.append(f"{beside} information-only rows not drawn")
        if record.get("left_out"):
            lines.append(f"{len(record['left_out'])} runs left out")
    if part:
        lines.append(f"{part} (line {fmt(line)})")
    text = "\n".join(textwrap.fill(line, 34) for line in lines if line)
    ax.text(1.02, 0.5, text, transform=ax.transAxes, ha="left", va="center", fontsize=7)


for ax, (record, index, part, line, rows) in zip(axes, panels, strict=True):
    if index == 0:
        label(ax, record)
    if rows.empty:
        statistic = record.get("statistic") or record.get("statement") or ""
        ax.text(0.0, 1.0, textwrap.fill(textwrap.shorten(statistic, 200), 95),
                transform=ax.transAxes, ha="left", va="top", fontsize=8, color="0.25")  # fmt: skip
        ax.set_axis_off()
        continue
    # Counted rows first, sorted by value (a caterpillar), then the rows reported beside them.
    rows = rows.assign(counted=rows["outcome"].isin(COUNTED))
    rows = rows.sort_values(["counted", "value"], ascending=[False, True]).reset_index(drop=True)
    rows["y"] = -np.arange(len(rows), dtype=float)
    ends = np.concatenate([rows[["value", "low", "high"]].to_numpy().ravel(), [line]])
    for outcome, group in rows.groupby("outcome", sort=False):
        colour = OUTCOME_COLOURS.get(outcome, BESIDE)
        low = (group["value"] - group["low"]).fillna(0).clip(lower=0)
        high = (group["high"] - group["value"]).fillna(0).clip(lower=0)
        ax.errorbar(group["value"], group["y"], xerr=[low, high], fmt="none", ecolor=colour,
                    elinewidth=0.9, alpha=0.8)  # fmt: skip
        ax.scatter(
            group["value"],
            group["y"],
            s=12,
            color=colour if outcome in COUNTED else "none",
            edgecolors=colour,
            linewidths=0.8,
            zorder=3,
        )
    headline = number(record.get("value"))
    match = rows[rows["counted"] & np.isclose(rows["value"], headline, rtol=1e-9, atol=0)]
    if len(match):
        ax.scatter(match["value"].iloc[:1], match["y"].iloc[:1], s=70, facecolors="none",
                   edgecolors="black", linewidths=1.1, zorder=4)  # fmt: skip
    if math.isfinite(line):
        ax.axvline(line, color="0.15", linestyle="--", linewidth=1)
    if plotting.wants_log(ends, decades=2):
        plotting.log_axis(ax, "x")
    ax.set_yticks([])
    ax.set_ylim(rows["y"].min() - 0.8, 0.8)
    ax.tick_params(axis="x", labelsize=7, pad=1)
    ax.grid(axis="y", visible=False)
    right_margin(ax, record, index == 0, part, line)

handles = [
    Line2D([], [], color=c, marker="o", markersize=4, label=o) for o, c in OUTCOME_COLOURS.items()
]
handles += [
    Line2D([], [], color=BESIDE, marker="o", markersize=4, markerfacecolor="none",
           label="not scored (control, too few points)"),
    Line2D([], [], color="0.15", linestyle="--", label="decision line"),
    Line2D([], [], linestyle="", marker="o", markersize=8, markerfacecolor="none",
           markeredgecolor="black", label="headline"),
]  # fmt: skip
fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False,
           bbox_to_anchor=(0.5, 1 - 0.35 / fig.get_figheight()))  # fmt: skip
fig.suptitle("Claims: each counted row's value and 95% interval against the decision line",
             y=1 - 0.08 / fig.get_figheight(), fontsize=11)  # fmt: skip
plotting.save(fig, pdf, png)
summary.set_index("id") if len(summary) else summary.copy()
