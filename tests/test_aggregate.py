"""Rule aggregate on the files of two real runs of the tiny study, one finished and one
diverged: every table holds both, the diverged run marked with its epoch and reason.
"""

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from factories import quiet, tiny_config, trained_run
from rankcollapse import files
from rankcollapse.aggregate import aggregate
from rankcollapse.measure import measure

TABLES = ("layers", "history", "spectra")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """The study tables of clusters_a at λ = 0.001 (finished) and λ = 1000 (diverges)."""
    root = tmp_path_factory.mktemp("aggregate")
    config = tiny_config()
    runs = []
    for wd in ("0.001", "1000"):
        run = trained_run(root, config, "clusters_a", wd)
        for name in ("layers.parquet", "spectra.safetensors"):
            run[name] = str(Path(run["metadata.json"]).parent / name)
        files = [run[name] for name in ("data", "model.safetensors", "metadata.json")]
        measure(*files, run["layers.parquet"], run["spectra.safetensors"], [0.01], 100, 1, quiet)
        runs.append(run)
    inputs = ("layers.parquet", "metadata.json", "history.csv", "spectra.safetensors")
    out = [str(root / f"{name}.parquet") for name in TABLES]
    aggregate(*([run[name] for run in runs] for name in inputs), *out, log=quiet)
    tables = {name: pd.read_parquet(path) for name, path in zip(TABLES, out, strict=True)}
    return tables | {"runs": runs, "root": root}


def test_history_records_keep_their_objective_f_beside_the_runs_objective(tables):
    history = tables["history"]
    finished = history[history["status"] == "finished"]
    run = pd.read_csv(tables["runs"][0]["history.csv"])
    assert finished["full_objective"].tolist() == run["full_objective"].tolist()
    assert (history["objective"] == "supervised").all()


def test_a_history_written_before_f_was_named_full_objective_is_read(tables):
    run = tables["runs"][0]
    old = tables["root"] / "old"
    shutil.copytree(Path(run["metadata.json"]).parent, old)
    history = pd.read_csv(old / "history.csv").rename(columns={"full_objective": "objective"})
    meta = files.read_json(old / "metadata.json")
    meta["history_sha256"] = files.write_history(old / "history.csv", history.to_dict("records"))
    files.write_json(old / "metadata.json", meta)
    inputs = [str(old / name) for name in ("layers.parquet", "metadata.json", "history.csv")]
    out = [str(old / f"{name}.parquet") for name in TABLES]
    aggregate(*([p] for p in inputs), [str(old / "spectra.safetensors")], *out, log=quiet)
    table = pd.read_parquet(out[1])
    assert table["full_objective"].tolist() == history["objective"].tolist()
    assert (table["objective"] == "supervised").all()


@pytest.mark.parametrize("name", TABLES)
def test_a_diverged_run_is_marked_with_its_epoch_and_reason_in_every_table(tables, name):
    table = tables[name]
    runs = table.groupby("weight_decay")["status"].unique().map(list).to_dict()
    assert runs == {1e-3: ["finished"], 1000.0: ["diverged"]}
    diverged = table[table["weight_decay"] == 1000.0]
    assert diverged["reason"].str.fullmatch(r"non-finite loss in sgd \d+").all()
    epoch = int(diverged["reason"].iloc[0].rsplit(" ", 1)[1])
    assert (diverged["epochs_run"] == epoch).all()


def test_the_spectra_of_a_diverged_run_are_one_row_without_values(tables):
    spectra = tables["spectra"]
    diverged = spectra[spectra["status"] == "diverged"]
    assert len(diverged) == 1 and diverged[["layer", "index", "sigma"]].isna().all(axis=None)
    finished = spectra[spectra["status"] == "finished"]
    # min(d_out, d_in) singular values per layer: 16 + 32 + 4, each finite
    assert len(finished) == 52 and finished["sigma"].map(math.isfinite).all()
