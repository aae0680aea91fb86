"""The rules' commands: a truncated dataset or weights file stops them with a message that
names the file and the fix, not a traceback from inside a library.
"""

import json
import subprocess

import pytest
from factories import run_spec
from rankcollapse import files
from rankcollapse.synthetic import gaussian_clusters
from workflow_runner import cli, run_files, train_command


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    dataset = root / "blobs.safetensors"
    tensors = gaussian_clusters(
        classes=3,
        dim=5,
        per_class=20,
        test_per_class=5,
        std=0.3,
        clusters_per_class=1,
        separation=1.0,
        seed=0,
    )
    files.save_tensors(dataset, tensors)
    spec = json.dumps({**run_spec(epochs=2), "study": "s", "dataset": {"name": "blobs"}})
    run = root / "run"
    assert cli(*train_command(spec, dataset, run, 1)).wait() == 0
    return dataset, spec, run


def truncated_copy(path, tmp_path):
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return copy


def assert_clear_error(job: subprocess.Popen, path) -> None:
    stderr = job.communicate()[1]
    assert job.returncode == 1, stderr
    assert f"{path}: cannot be read" in stderr
    assert f"Rebuild it with `snakemake --cores all --force {path}`" in stderr
    assert "Traceback" not in stderr


def test_a_truncated_dataset_stops_training_clearly(trained, tmp_path):
    dataset, spec, _ = trained
    bad = truncated_copy(dataset, tmp_path)
    args = train_command(spec, bad, tmp_path / "run", 1)
    assert_clear_error(cli(*args, stderr=subprocess.PIPE), bad)


def test_truncated_weights_stop_measuring_clearly(trained, tmp_path):
    dataset, _, run = trained
    (tmp_path / "metadata.json").write_text((run / "metadata.json").read_text())
    bad = truncated_copy(run / "model.safetensors", tmp_path)
    args = ["measure", *run_files(dataset, tmp_path)]
    args += ["--layers", str(tmp_path / "l.parquet"), "--spectra", str(tmp_path / "s.st")]
    args += ["--eps", "0.01", "--batch-size", "100", "--threads", "1"]
    assert_clear_error(cli(*args, stderr=subprocess.PIPE), bad)
    assert not (tmp_path / "l.parquet").exists()
