"""Preemption: a training job killed with SIGKILL resumes from its last checkpoint, redoes only
the records after it (counted from its log) and ends bitwise where an uninterrupted run ends;
same config and seed give bitwise-identical tables, other seeds other ones. Each kill comes
when the job has reached a given state, read from the files it writes, never after a delay.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from rankcollapse.config import dataset_spec, run_spec, validate_config
from workflow_runner import ENV, REPO, cli, snakemake, snakemake_command, train_command

CONFIG = {
    "datasets": {
        "blobs": {
            "source": "gaussian_clusters",
            "classes": 4,
            "dim": 16,
            "per_class": 150,
            "test_per_class": 20,
            "std": 1.0,
        }
    },
    "studies": {
        "resume": {
            "datasets": ["blobs"],
            "model": {"depth": 3, "width": 32, "activation": "softplus"},
            "optimizer": {"epochs": 30, "batch_size": 16},
            "convergence": {"steps": 30, "record_every": 5},
            "weight_decay": [1.0e-3],
            "seeds": [0, 1],
        }
    },
    "training": {"checkpoint_every": 2},
}
# When each job is killed: once its first record is logged (its first checkpoint comes with
# the second record), or once its checkpoint has reached an SGD epoch or L-BFGS iteration.
KILL_WHEN = ["logged sgd 1", "checkpoint sgd 8", "checkpoint sgd 24", "checkpoint convergence 10"]


def checkpoint_progress(path: Path) -> dict[str, int] | None:
    """The progress recorded in a checkpoint (per phase, the epochs or L-BFGS iterations it
    holds), or None while there is none. Read while the job runs: the checkpoint is replaced
    atomically, and its safetensors header (8 bytes of length, then JSON with the metadata) is
    read through one open file, so each read sees a whole one.
    """
    try:
        with path.open("rb") as file:
            header = json.loads(file.read(int.from_bytes(file.read(8), "little")))
    except FileNotFoundError:
        return None
    return json.loads(header["__metadata__"]["progress"])


def wait_until(reached, job: subprocess.Popen, what: str, every: float = 0.002) -> None:
    """Poll the file system every ``every`` seconds until ``reached()``, while ``job`` runs
    (5 minutes at most).
    """
    deadline = time.monotonic() + 300
    while not reached():
        assert job.poll() is None, f"the job ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def records_after(history: pd.DataFrame, progress: dict[str, int] | None) -> dict[str, int]:
    """Per phase, the records of an uninterrupted run's history that come after a checkpoint's
    progress: all of them without a checkpoint.
    """
    done = progress or {}
    return {
        phase: int(((history.phase == phase) & (history.epoch > done.get(phase, 0))).sum())
        for phase in ("sgd", "convergence")
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A prepared dataset and the train command line of seed 0."""
    root = tmp_path_factory.mktemp("resume")
    config = json.loads(json.dumps(CONFIG))
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    data = root / "blobs.safetensors"
    spec = json.dumps(dataset_spec(config, "blobs"))
    prepare = ["prepare-dataset", "--spec", spec, "--raw=", "--out", str(data)]
    assert cli(*prepare).wait() == 0
    spec = json.dumps(run_spec(config, "resume", "blobs", "0.001", "0"))

    def train_args(out_dir: Path, checkpoint_every: int) -> list[str]:
        return train_command(spec, data, out_dir, checkpoint_every)

    reference = root / "uninterrupted"
    assert cli(*train_args(reference, 0)).wait() == 0
    return root, train_args, reference


@pytest.mark.parametrize("kill_when", KILL_WHEN)
def test_a_killed_training_job_resumes_bitwise(run, kill_when):
    root, train_args, reference = run
    out = root / kill_when.replace(" ", "_")
    checkpoint = out / "checkpoint.safetensors"
    killed_log = root / f"{out.name}.log"
    with killed_log.open("w") as stdout:
        job = cli(*train_args(out, 2), stdout=stdout)
    what, phase, point = kill_when.split()
    if what == "logged":
        line = f"{phase} {point}:"
        wait_until(lambda: line in killed_log.read_text(), job, f"{line!r} in its log")
    else:
        wait_until(
            lambda: (checkpoint_progress(checkpoint) or {}).get(phase, 0) >= int(point),
            job,
            f"a checkpoint at {phase} {point}",
        )
    job.send_signal(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()
    # What the rerun must redo follows from the checkpoint the kill left, whenever it came.
    progress = checkpoint_progress(checkpoint)
    if what == "checkpoint":
        assert progress[phase] >= int(point)
    resumed = cli(*train_args(out, 2), stdout=subprocess.PIPE)
    log = resumed.communicate()[0]
    assert resumed.returncode == 0, log
    assert ("resumed from" in log) == (progress is not None)
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["resumed_from"] != "") == (progress is not None)
    expected = pd.read_csv(reference / "history.csv").drop(columns="seconds")
    # It resumed from the checkpoint: it redid only the records after it (a fresh run does
    # 30 SGD epochs and every L-BFGS record), counted from its log.
    lines = (out / "log").read_text().splitlines()  # the run's own log, of the resumed job
    redone = records_after(expected, progress)
    assert sum(line.startswith("sgd ") for line in lines) == redone["sgd"], log
    assert sum(line.startswith("convergence ") for line in lines) == redone["convergence"], log
    assert (out / "model.safetensors").read_bytes() == (
        reference / "model.safetensors"
    ).read_bytes()
    history = pd.read_csv(out / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(history, expected, check_exact=True)
    assert not checkpoint.exists()


def write_config(path: Path) -> Path:
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def test_snakemake_killed_mid_run_resumes_to_identical_tables(tmp_path):
    config = write_config(tmp_path / "resume.yaml")
    target = "results/tables/resume/layers.parquet"
    straight = tmp_path / "straight"
    done = snakemake(straight, "--cores", "2", target, configfile=config)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    train_log = killed / "results/logs/train/resume/blobs/wd~0.001/seed~0.log"
    checkpoint = killed / "results/runs/resume/blobs/wd~0.001/seed~0/checkpoint.safetensors"
    job = subprocess.Popen(
        snakemake_command(killed, "--cores", "1", target, configfile=config),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Killed, Snakemake and its training job with it, once seed 0 has a checkpoint mid-SGD.
    wait_until(
        lambda: (checkpoint_progress(checkpoint) or {}).get("sgd", 0) >= 12,
        job,
        "a checkpoint of seed 0 at sgd 12",
        every=0.01,
    )
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (killed / target).exists()
    progress = checkpoint_progress(checkpoint)

    assert snakemake(killed, "--unlock", configfile=config).returncode == 0
    done = snakemake(killed, "--cores", "2", "--rerun-incomplete", target, configfile=config)
    assert done.returncode == 0, done.stderr[-3000:]
    # The rerun's training log: seed 0 resumed and redid only the records after its checkpoint.
    log = train_log.read_text()
    assert "resumed from" in log
    lines = log.splitlines()
    history = pd.read_csv(straight / "results/runs/resume/blobs/wd~0.001/seed~0/history.csv")
    redone = records_after(history, progress)
    assert 12 <= progress["sgd"] < 30  # killed mid-SGD
    assert sum(line.startswith("sgd ") for line in lines) == redone["sgd"], log
    assert sum(line.startswith("convergence ") for line in lines) == redone["convergence"], log

    table = pd.read_parquet(killed / target)
    pd.testing.assert_frame_equal(table, pd.read_parquet(straight / target), check_exact=True)
    measures = ["rank_fro", "tail_K", "tcv", "ss_ratio", "train_acc"]
    by_seed = table.set_index(["seed", "layer"])[measures]
    assert not by_seed.xs(0).equals(by_seed.xs(1))
