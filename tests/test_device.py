"""The process settings of a CPU job (seeds, deterministic algorithms, threads): the same config
and seed give the same run bit for bit, also on two threads (README, "Same config and seed,
same tables").
"""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from factories import quiet, tiny_config, trained_run
from rankcollapse import files
from rankcollapse.measure import measure

# What times a run: its metadata's seconds, and the hashes of the files that hold them.
TIMINGS = {"train_seconds", "history_sha256", "sha256"}


@pytest.fixture
def two_threads():
    """2, in a process left on one thread: the job itself must ask for two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield 2
    torch.set_num_threads(threads)


def test_a_cpu_run_repeats_bit_for_bit_on_two_threads(tmp_path, two_threads):
    config = tiny_config("tiny")
    # Large enough that the matrix products and sums are split between the threads.
    config["datasets"]["clusters_a"].update(dim=64, per_class=125)
    study = config["studies"]["tiny"]
    study["model"]["width"], study["optimizer"]["batch_size"] = 128, 250
    study["convergence"].update(steps=2, record_every=2)
    runs = []
    for name in ("first", "again"):
        run = trained_run(tmp_path / name, config, "clusters_a", "0.001", threads=two_threads)
        assert torch.get_num_threads() == two_threads
        folder = Path(run["metadata.json"]).parent
        inputs = [run[name] for name in ("data", "model.safetensors", "metadata.json")]
        tables = [str(folder / "layers.parquet"), str(folder / "spectra.safetensors")]
        measure(*inputs, *tables, [0.01], 250, two_threads, quiet)
        runs.append(folder)
    first, again = runs
    meta = files.read_json(first / "metadata.json")
    assert meta["status"] == "finished" and meta["certificate"]["steps"] == 2  # and L-BFGS
    for name in ("model.safetensors", "layers.parquet", "spectra.safetensors"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    histories = [pd.read_csv(run / "history.csv").drop(columns="seconds") for run in runs]
    pd.testing.assert_frame_equal(*histories, check_exact=True)
    # NaN (no fine-tuning) equal to NaN: compared as written.
    metadata = [
        json.dumps(
            {k: v for k, v in files.read_json(run / "metadata.json").items() if k not in TIMINGS}
        )
        for run in runs
    ]
    assert metadata[0] == metadata[1]
