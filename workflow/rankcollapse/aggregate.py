"""Rule ``aggregate``: a study's tidy tables from its runs' files. Layers (one row per run ×
layer), history (one row per run × record) and spectra (one row per run × layer × singular
value), each row carrying its run's keys and provenance; a run that did not finish (diverged)
has its marked rows in every table, in spectra one row without values.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from . import files


def aggregate(
    layers: list[str],
    metadata: list[str],
    history: list[str],
    spectra: list[str],
    layers_table: str,
    history_table: str,
    spectra_table: str,
    log: Callable[[str], None] = print,
) -> None:
    """The i-th entry of each list is one run's file; the three study tables are written."""
    layer_frames, history_frames, spectra_frames = [], [], []
    for run in zip(layers, metadata, history, spectra, strict=True):
        layers_path, metadata_path, history_path, spectra_path = run
        meta = files.read_json(metadata_path)
        keys = files.run_keys(meta)
        layer_frames.append(files.read_table(layers_path))
        history = files.read_history(history_path, meta["history_sha256"])
        # A history written before F was named full_objective has it as `objective`, which
        # is also the run key (supervised, simclr) that every row gets below.
        if "full_objective" not in history:
            history = history.rename(columns={"objective": "full_objective"})
        history_frames.append(history.assign(**keys))
        tensors, _ = files.load_tensors(spectra_path)
        for layer, s in tensors.items():
            index = range(1, len(s) + 1)
            spectra_frames.append(
                pd.DataFrame({**keys, "layer": layer, "index": index, "sigma": s})
            )
        if not tensors:  # measure wrote none: the run is marked, as in its layer table
            spectra_frames.append(pd.DataFrame([keys]))
    outputs = {
        layers_table: layer_frames,
        history_table: history_frames,
        spectra_table: spectra_frames,
    }
    for out, frames in outputs.items():
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        files.write_table(out, table)
        log(f"{len(table)} rows from {len(frames)} runs -> {out}")
