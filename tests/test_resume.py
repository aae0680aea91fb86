"""Preemption: a training job killed with SIGKILL at a random point resumes from its last
checkpoint and ends bitwise where an uninterrupted run ends; same config and seed give
bitwise-identical tables, other seeds other ones.
"""

import json
import os
import random
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
# Lines of the training log after which the kill is sent, a random few milliseconds later.
KILL_AFTER = ["sgd 1:", "sgd 9:", "sgd 24:", "convergence 15:"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A prepared dataset and the train command line of seed 0."""
    root = tmp_path_factory.mktemp("resume")
    config = json.loads(json.dumps(CONFIG))
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    data = root / "blobs.safetensors"
    spec = json.dumps(dataset_spec(config, "blobs"))
    prepare = ["prepare-dataset", "--spec", spec, "--raw=", "--mirror=", "--out", str(data)]
    assert cli(*prepare).wait() == 0
    spec = json.dumps(run_spec(config, "resume", "blobs", "0.001", "0"))

    def train_args(out_dir: Path, checkpoint_every: int) -> list[str]:
        return train_command(spec, data, out_dir, checkpoint_every)

    reference = root / "uninterrupted"
    assert cli(*train_args(reference, 0)).wait() == 0
    return root, train_args, reference


@pytest.mark.parametrize("kill_after", KILL_AFTER)
def test_a_killed_training_job_resumes_bitwise(run, kill_after):
    root, train_args, reference = run
    out = root / kill_after.replace(" ", "_").rstrip(":")
    job = cli(*train_args(out, 2), stdout=subprocess.PIPE)
    for line in job.stdout:
        if line.startswith(kill_after):
            time.sleep(random.Random(kill_after).uniform(0, 0.02))
            job.send_signal(signal.SIGKILL)
            break
    assert job.wait() == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()
    checkpointed = (out / "checkpoint.safetensors").exists()
    resumed = cli(*train_args(out, 2), stdout=subprocess.PIPE)
    log = resumed.communicate()[0]
    assert resumed.returncode == 0, log
    # A checkpoint is written after every second record: none yet after the first epoch.
    assert checkpointed == (kill_after != "sgd 1:")
    assert ("resumed from" in log) == checkpointed
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["resumed_from"] != "") == checkpointed
    assert (out / "model.safetensors").read_bytes() == (
        reference / "model.safetensors"
    ).read_bytes()
    history = pd.read_csv(out / "history.csv").drop(columns="seconds")
    expected = pd.read_csv(reference / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(history, expected, check_exact=True)
    assert not (out / "checkpoint.safetensors").exists()


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
    job = subprocess.Popen(
        snakemake_command(killed, "--cores", "1", target, configfile=config),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while "sgd 12:" not in (train_log.read_text() if train_log.exists() else ""):
        assert job.poll() is None and time.monotonic() < deadline, "training never got going"
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (killed / target).exists()

    assert snakemake(killed, "--unlock", configfile=config).returncode == 0
    done = snakemake(killed, "--cores", "2", "--rerun-incomplete", target, configfile=config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in train_log.read_text()

    table = pd.read_parquet(killed / target)
    pd.testing.assert_frame_equal(table, pd.read_parquet(straight / target), check_exact=True)
    measures = ["rank_fro", "tail_K", "tcv", "ss_ratio", "train_acc"]
    by_seed = table.set_index(["seed", "layer"])[measures]
    assert not by_seed.xs(0).equals(by_seed.xs(1))
