"""A run's kept files: a pack retrained for another run's sake puts a run's earlier files
back, unchanged, when they are what training it now would write, and trains it otherwise.
"""

import json

import pytest
from factories import RUN_FILES, SCHEMA, train_alone
from rankcollapse import files, kept
from rankcollapse.config import dataset_spec, run_spec, validate_config
from rankcollapse.prepare_dataset import prepare_dataset

CONFIG = {
    "datasets": {"blobs": {"source": "gaussian_clusters", "classes": 3, "dim": 4}},
    "studies": {
        "s": {
            "datasets": ["blobs"],
            "optimizer": {"epochs": 2},
            "convergence": {"steps": 0},
            "weight_decay": [1e-3],
        }
    },
}


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """One run trained by the rule's function, at a clean commit."""
    monkeypatch.setattr(files, "git_commit", lambda: "0123456789ab")
    config = json.loads(json.dumps(CONFIG))
    validate_config(config, SCHEMA)
    data = tmp_path / "blobs.safetensors"
    prepare_dataset(dataset_spec(config, "blobs"), None, str(data), lambda _: None)
    spec = run_spec(config, "s", "blobs", "0.001", "0")
    run = tmp_path / "run"
    train_alone(spec, str(data), run)
    return spec, data, run


def outputs(run):
    return {name: (run / name).read_bytes() for name in RUN_FILES[:3]}


def test_a_rerun_puts_the_kept_files_back_without_training(trained):
    spec, data, run = trained
    before = outputs(run)
    for name in RUN_FILES[:3]:  # as Snakemake removes a job's outputs before it reruns
        (run / name).unlink()
    train_alone(spec, str(data), run)
    log = (run / "train.log").read_text()
    assert "kept result of commit 0123456789ab reused" in log and "sgd 1:" not in log
    assert outputs(run) == before


@pytest.mark.parametrize(
    "change",
    [
        lambda spec, made: spec.update(config_hash="another"),
        lambda spec, made: made.update(git_commit=made["git_commit"] + "-dirty"),
        lambda spec, made: made.update(git_commit="unknown"),
        lambda spec, made: made.update(threads=made["threads"] + 1),
        lambda spec, made: made.update(device="NVIDIA H100"),
    ],
)
def test_kept_files_of_another_spec_commit_or_machine_are_not_reused(trained, change):
    spec, _, run = trained
    made = {k: v for k, v in files.read_json(run / "metadata.json").items()}
    paths = {"spec": dict(spec)} | {
        n: str(run / f) for n, f in zip(kept.NAMES, RUN_FILES, strict=False)
    }
    change(paths["spec"], made)
    assert not kept.restore(paths, made, print)
    change_nothing = {k: v for k, v in files.read_json(run / "metadata.json").items()}
    assert kept.restore({**paths, "spec": spec}, change_nothing, print)


def test_a_kept_diverged_run_is_trained_again_where_divergence_fails_the_job(trained):
    spec, _, run = trained
    meta = files.read_json(run / "metadata.json")
    files.write_json(run / ".trained/metadata.json", {**meta, "status": "diverged"})
    paths = {"spec": spec} | {n: str(run / f) for n, f in zip(kept.NAMES, RUN_FILES, strict=False)}
    assert not kept.restore(paths, meta, print, diverged_ok=False)
    assert kept.restore(paths, meta, print, diverged_ok=True)
