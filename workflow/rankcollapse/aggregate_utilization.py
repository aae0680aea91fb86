"""Rule ``aggregate_utilization``: a study's paper-B tables, its runs' utilization tables
one under the other, and likewise their compression tables.
"""

from __future__ import annotations

from collections.abc import Callable

from . import files


def aggregate_utilization(
    utilization: list[str],
    compression: list[str],
    utilization_table: str,
    compression_table: str,
    log: Callable[[str], None] = print,
) -> None:
    for out, paths in ((utilization_table, utilization), (compression_table, compression)):
        table = files.read_tables(paths)
        files.write_table(out, table)
        log(f"{len(table)} rows from {len(paths)} files -> {out}")
