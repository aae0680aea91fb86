"""The claims report: markdown for readers, JSON for programs, from the same records."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from .. import files
from .verdicts import Check, Claim, Verdict


def plain(value):
    """A JSON-ready copy: numpy scalars to Python, NaN/inf/NA to None, recursively."""
    if isinstance(value, Claim):
        return plain(value.to_dict())
    if isinstance(value, Check):
        return value.note
    if isinstance(value, Verdict):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return value


def fmt(value) -> str:
    """Short text of a number for statistic lines and tables."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def cell(value) -> str:
    """A markdown table cell: short numbers, no stray pipes or newlines."""
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """Lines of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def details_tables(details: list[dict]) -> list[str]:
    """One markdown table per set of keys among the detail rows, in order of appearance."""
    layouts: dict[tuple, list[dict]] = {}
    for row in details:
        layouts.setdefault(tuple(row), []).append(row)
    lines: list[str] = []
    for keys, rows in layouts.items():
        lines += [*markdown_table(list(keys), [[r[k] for k in keys] for r in rows]), ""]
    return lines


def render_markdown(claims: list[dict], thresholds: dict) -> str:
    """The claims report: summary table, then each claim's statistic and detail rows."""
    lines = [
        "# Claims: verdict",
        "",
        "Thresholds come from the config's `claims` section; they were fixed before the runs "
        "and are not tuned. Only finished runs count. Layers with min(d_in, d_out) ≤ K cannot "
        "have rank above K and are listed as not applicable, never as a pass or a fail.",
        "",
    ]
    lines += [
        *markdown_table(["threshold", "value"], [[k, str(v)] for k, v in thresholds.items()]),
        "",
    ]
    lines += [
        "## Summary",
        "",
        *markdown_table(
            ["claim", "verdict", "statistic"],
            [[c["id"], f"**{c['verdict']}**", c["statistic"]] for c in claims],
        ),
        "",
    ]
    for c in claims:
        lines += [
            f"## {c['id']}: {c['verdict']}",
            "",
            c["statement"],
            "",
            f"Statistic: {c['statistic']}",
            "",
        ]
        lines += details_tables(c["details"]) if c["details"] else ["No rows.", ""]
    left_out = sorted({run for c in claims for run in c["left_out"]})
    lines += ["## Runs left out", ""]
    lines += [f"- {run}" for run in left_out] if left_out else ["None: every run finished."]
    return "\n".join(lines) + "\n"


def write_report(claims: list[dict], thresholds: dict, markdown: str, json_path: str) -> None:
    """Write the claims (JSON-ready, from :func:`plain`) as markdown and as JSON
    {"thresholds", "claims"} (no NaN).
    """
    payload = json.dumps(
        {"thresholds": plain(thresholds), "claims": claims}, indent=2, allow_nan=False
    )
    files.write_text(markdown, render_markdown(claims, thresholds))
    files.write_text(json_path, payload)
