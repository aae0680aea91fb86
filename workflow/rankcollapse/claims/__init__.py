"""Rule ``claims``: the verdict on claims C1-C5 and P of the rank-collapse paper
(:mod:`.rank_collapse`) and U1-U6 of the utilization paper (:mod:`.utilization`) from the
study tables, written as markdown and JSON (:mod:`.report`). Definitions: docs/science.md §7.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .. import files
from . import rank_collapse, utilization
from .report import plain, write_report
from .statistics import RUN_KEYS, supervised


def left_out_runs(table: pd.DataFrame) -> list[str]:
    """One line per run that did not finish (diverged, ...): it counts in no claim."""
    columns = [*RUN_KEYS, "status", "reason"]
    runs = table.loc[table["status"] != "finished", columns].drop_duplicates()
    runs = runs.sort_values(RUN_KEYS)
    return [
        f"{r.study}/{r.dataset} λ={r.weight_decay:g} seed {r.seed}: {r.status} ({r.reason})"
        for r in runs.itertuples()
    ]


def evaluate_claims(
    table: pd.DataFrame,
    thresholds: dict,
    utilization_table: pd.DataFrame | None = None,
    compression_table: pd.DataFrame | None = None,
) -> dict:
    """The report's content, JSON-ready (NaN → None): ``claims`` (C1..P in order, then the
    paper-B claims when a utilization table is given, each listing the runs left out),
    ``findings`` (no verdict) and ``not_counted`` (finished runs paper A's claims skip). Runs
    of self-supervised studies enter U6 only.
    """
    labelled = supervised(table)
    records = [claim(labelled, thresholds) for claim in rank_collapse.CLAIMS]
    if utilization_table is not None:
        compression_table = compression_table if compression_table is not None else pd.DataFrame()
        records += [
            claim(supervised(utilization_table), supervised(compression_table), thresholds)
            for claim in utilization.CLAIMS
        ]
        records.append(utilization.claim_u6(utilization_table, compression_table, thresholds))
    left_out = left_out_runs(table)
    for record in records:
        record.left_out = list(left_out)
    return plain(
        {
            "claims": records,
            "findings": rank_collapse.findings(labelled, thresholds),
            "not_counted": rank_collapse.not_counted_runs(labelled, thresholds["min_train_acc"]),
        }
    )


def claims(
    tables: list[str],
    utilization_tables: list[str],
    compression_tables: list[str],
    thresholds: dict,
    markdown: str,
    json_path: str,
    log: Callable[[str], None] = print,
) -> None:
    """Decide every claim from the studies' tables and write the report."""
    content = evaluate_claims(
        files.read_tables(tables),
        thresholds,
        files.read_tables(utilization_tables) if utilization_tables else None,
        files.read_tables(compression_tables) if compression_tables else None,
    )
    write_report(content, thresholds, markdown, json_path)
    log(Path(markdown).read_text())
