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


def interval(claim: dict) -> str:
    """ "value [low, high]" of a claim's headline statistic, or "—"."""
    if claim["value"] is None:
        return "—"
    text = fmt(claim["value"])
    if claim["low"] is not None or claim["high"] is not None:
        text += f" [{fmt(claim['low'])}, {fmt(claim['high'])}]"
    return text


INTRODUCTION = (
    "Each claim's rule (measure, runs counted, statistic, decision rule) is written in "
    "docs/science.md §7 and was fixed before the runs it judges; thresholds come from the "
    "config's `claims` section and are never tuned. A claim *holds* when every group it tests "
    "passes, *does not hold* when one group shows the opposite at the significance level, is "
    "*inconclusive* when neither (too few points or certified runs, or an interval across the "
    "line), *not testable at this scale* when it speaks of data or models out of reach, and "
    "*not run* when nothing was tested. Paper A's claims count only finished runs with λ > 0 "
    "certified stationary whose training accuracy reaches `min_train_acc`; trends in λ are "
    "judged only on studies with at least 3 values of λ > 0. Intervals are 95%. Layers with "
    "min(d_in, d_out) ≤ K cannot have rank above K and are not tested; layer 1 (its input is "
    "the raw data) is a control in the trends in λ. A *check of the implementation* can only "
    "fail through a bug: it is not evidence."
)


def render_markdown(content: dict, thresholds: dict) -> str:
    """The claims report: summary table, each claim's rule, statistic and detail rows, the
    findings, and the runs not counted or left out.
    """
    claims = content["claims"]
    lines = ["# Claims: verdict", "", INTRODUCTION, ""]
    lines += [
        *markdown_table(["threshold", "value"], [[k, str(v)] for k, v in thresholds.items()]),
        "",
        "## Summary",
        "",
        *markdown_table(
            ["claim", "verdict", "kind", "statistic", "value [95% interval]", "line", "n runs"],
            [
                [
                    c["id"],
                    f"**{c['verdict']}**",
                    c["kind"],
                    c["measure"],
                    interval(c),
                    c["line"],
                    c["n"],
                ]
                for c in claims
            ],
        ),  # fmt: skip
        "",
    ]
    for c in claims:
        lines += [
            f"## {c['id']}: {c['verdict']}",
            "",
            c["statement"],
            "",
            f"Rule: {c['rule']}",
            "",
            f"Statistic: {c['statistic']}",
            "",
        ]
        lines += details_tables(c["details"]) if c["details"] else ["No rows.", ""]
    lines += ["## Findings (no verdict)", ""]
    lines += details_tables(content["findings"]) if content["findings"] else ["None.", ""]
    lines += ["## Runs paper A's claims do not count", ""]
    not_counted = content["not_counted"]
    lines += [f"- {run}" for run in not_counted] if not_counted else ["None."]
    left_out = sorted({run for c in claims for run in c["left_out"]})
    lines += ["", "## Runs left out", ""]
    lines += [f"- {run}" for run in left_out] if left_out else ["None: every run finished."]
    return "\n".join(lines) + "\n"


def write_report(content: dict, thresholds: dict, markdown: str, json_path: str) -> None:
    """Write the report's content (JSON-ready, from :func:`plain`) as markdown and as JSON
    {"thresholds", "claims", "findings", "not_counted"} (no NaN).
    """
    payload = json.dumps({"thresholds": plain(thresholds), **content}, indent=2, allow_nan=False)
    files.write_text(markdown, render_markdown(content, thresholds))
    files.write_text(json_path, payload)
