"""Every artifact of a real run is verified when read: a byte flipped anywhere in one run's
files is refused with a message naming the file, or changes nothing that is read; never a
silent change, never a traceback.
"""

import re
import shlex
import shutil
import subprocess

import pandas as pd
import pytest
import torch
from rankcollapse import files
from rankcollapse.errors import DataError
from rankcollapse.prepare_dataset import verify_raw_folder
from workflow_runner import ENV, REPO, snakemake, snakemake_command

RUN = "results/runs/tiny/clusters_a/wd~0.001/seed~0"
TINY = REPO / "tests/configs/tiny.yaml"
POSITIONS = 40  # flipped bytes per file, spread evenly, plus its first and last 4


def artifacts(root) -> dict:
    """Each file of one run (and its dataset and study tables) with the reader the pipeline
    uses for it.
    """
    run = root / RUN
    history_sha = files.read_json(run / "metadata.json")["history_sha256"]
    readers = {
        root / "results/data/clusters_a.safetensors": files.load_tensors,
        run / "model.safetensors": files.load_tensors,
        run / "spectra.safetensors": files.load_tensors,
        run / "moments.safetensors": files.load_tensors,
        run / "metadata.json": files.read_json,
        run / "history.csv": lambda path: files.read_history(path, history_sha),
        run / "layers.parquet": files.read_table,
        run / "utilization.parquet": files.read_table,
        run / "compress/energy~0.99.parquet": files.read_table,
    }
    for table in sorted((root / "results/tables/tiny").glob("*.parquet")):
        readers[table] = files.read_table
    return readers


def same(a, b) -> bool:
    """Whether two read results are identical (tensors bitwise, tables with their dtypes)."""
    if isinstance(a, tuple):
        return all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, pd.DataFrame):
        return a.dtypes.equals(b.dtypes) and a.equals(b)
    return a == b


@pytest.mark.workflow
def test_every_byte_flip_in_a_run_is_refused_or_harmless(tiny_run, tmp_path):
    counts = {"tried": 0, "refused": 0, "harmless": 0, "silent": 0}
    silent = []
    for path, read in artifacts(tiny_run).items():
        reference = read(path)
        data = path.read_bytes()
        n = len(data)
        positions = sorted(
            {*range(4), *range(n - 4, n), *(i * n // POSITIONS for i in range(POSITIONS))}
        )
        copy = tmp_path / path.name
        for position in positions:
            flipped = bytearray(data)
            flipped[position] ^= 0x10
            copy.write_bytes(bytes(flipped))
            counts["tried"] += 1
            try:
                result = read(copy)
            except DataError as error:
                assert str(copy) in str(error) and "Rebuild it with" in str(error)
                counts["refused"] += 1
                continue
            if same(result, reference):
                counts["harmless"] += 1
            else:
                counts["silent"] += 1
                silent.append(f"{path.relative_to(tiny_run)} byte {position}")
        shutil.copy(path, copy)
    print("byte flips:", counts)
    assert counts["tried"] > 500
    assert not silent, silent


ADVICE = re.compile(r"Rebuild it with `(snakemake [^`]+)`")


def refused_flip(path) -> None:
    """Flip the first byte, from the end, whose flip the file's reader refuses."""
    data = path.read_bytes()
    for position in range(len(data) - 1, 0, -1):
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        path.write_bytes(bytes(flipped))
        if path.suffix in (".csv", ".json"):  # its last byte changed breaks its hash or syntax
            return
        try:
            (files.load_tensors if path.suffix == ".safetensors" else files.read_table)(path)
        except DataError:
            return
    raise AssertionError(f"no refused flip found in {path}")


# One file of each kind: weights (safetensors), history (CSV), metadata (JSON), a run's table
# and a study's table (parquet).
DAMAGED = [
    f"{RUN}/model.safetensors",
    f"{RUN}/history.csv",
    f"{RUN}/metadata.json",
    f"{RUN}/layers.parquet",
    "results/tables/tiny/utilization.parquet",
]


@pytest.mark.workflow
@pytest.mark.parametrize("damaged", DAMAGED, ids=lambda p: p.rsplit("/", 1)[-1])
def test_following_the_printed_advice_rebuilds_a_damaged_file(tiny_run, tmp_path, damaged):
    work = tmp_path / "work"
    for folder in ("results", ".snakemake"):
        shutil.copytree(tiny_run / folder, work / folder, symlinks=True)
    shutil.rmtree(work / ".snakemake/locks", ignore_errors=True)
    refused_flip(work / damaged)
    first = snakemake(work, "--cores", "2", "results/claims.md", configfile=TINY)
    assert first.returncode != 0
    logs = [p.read_text() for p in (work / "results/logs").rglob("*.log")]
    advice = [m for log in logs if damaged in log for m in ADVICE.findall(log)]
    assert advice, first.stderr[-3000:]
    command = shlex.split(advice[0])
    assert command[:4] == ["snakemake", "--cores", "all", "--force"]
    assert command[4] == damaged
    # The printed command, word for word, in the test's working directory and config.
    rebuilt = subprocess.run(
        snakemake_command(work, *command[1:], configfile=TINY), env=ENV, capture_output=True
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    again = snakemake(work, "--cores", "2", "results/claims.md", configfile=TINY)
    assert again.returncode == 0, again.stderr[-3000:]
    for table in ("layers", "utilization", "compression"):
        path = f"results/tables/tiny/{table}.parquet"
        pd.testing.assert_frame_equal(
            files.read_table(work / path), files.read_table(tiny_run / path), check_exact=True
        )
    history = files.read_table(work / "results/tables/tiny/history.parquet")
    expected = files.read_table(tiny_run / "results/tables/tiny/history.parquet")
    pd.testing.assert_frame_equal(history.drop(columns="seconds"), expected.drop(columns="seconds"))
    claims = (work / "results/claims.json").read_text()
    assert claims == (tiny_run / "results/claims.json").read_text()


@pytest.mark.workflow
def test_a_raw_file_changed_since_it_was_fetched_is_refused_before_preparing(tiny_run, tmp_path):
    raw = tmp_path / "mnist"
    shutil.copytree(tiny_run / "results/raw/mnist", raw)
    verify_raw_folder("mnist", raw)
    for path in sorted(raw.glob("*-ubyte")):
        good = path.read_bytes()
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(DataError, match=f"{path.name} there fails its official checksum"):
            verify_raw_folder("mnist", raw)
        path.write_bytes(good)
