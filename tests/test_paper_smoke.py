"""The paper config at smoke scale (`--config scale=smoke`): planned with every rule of the full
protocol, and its CIFAR-10 path run for real through the DAG, from a generated archive in
CIFAR's own binary format placed in the mirror folder.
"""

import json

import pytest
from factories import cifar10_archive
from rankcollapse.readers import md5_of
from safetensors import safe_open
from workflow_runner import REPO, job_counts, snakemake

PAPER = REPO / "config/paper.yaml"
SMOKE = ["scale=smoke", "device=cpu"]
VIT_RUN = "results/runs/vit_tiny/cifar10/wd~0/seed~0"


def smoke_run(workdir, *targets, mirror, md5):
    data = f"data={{mirror: {mirror}, download: false, cifar10: {{md5: {md5}}}}}"
    return snakemake(workdir, "--cores", "2", *targets, "--config", *SMOKE, data, configfile=PAPER)


def test_the_smoke_scale_plans_every_rule_of_the_paper_config(tmp_path):
    full = snakemake(tmp_path, "-n", "--config", "device=cpu", configfile=PAPER)
    smoke = snakemake(tmp_path, "-n", "--config", *SMOKE, configfile=PAPER)
    assert full.returncode == 0 and smoke.returncode == 0, full.stderr + smoke.stderr
    full_jobs, smoke_jobs = job_counts(full.stdout), job_counts(smoke.stdout)
    assert smoke_jobs.keys() == full_jobs.keys()
    # 7 studies, 46 runs: one seed and the ends of each λ grid (and the ViT's λ paired for U6).
    assert smoke_jobs["train"] == 46 and smoke_jobs["total"] == 303
    assert full_jobs["train"] == 564


@pytest.fixture(scope="module")
def vit_on_cifar(tmp_path_factory):
    """The paper's ViT-Tiny (12 blocks, patch 4) on 3-channel CIFAR-10 images, trained and
    measured through the DAG at smoke scale, with 4 threads per job asked for."""
    root = tmp_path_factory.mktemp("paper_smoke")
    archive = cifar10_archive(root / "mirror" / "cifar10" / "cifar-10-binary.tar.gz")
    done = smoke_run(
        root / "work", f"{VIT_RUN}/layers.parquet", mirror=root / "mirror", md5=md5_of(archive)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "work", archive


def test_cifar10_comes_from_the_mirror_and_is_subset(vit_on_cifar):
    work, archive = vit_on_cifar
    provenance = json.loads((work / "results/raw/cifar10/provenance.json").read_text())
    assert provenance[archive.name] == {"source": "mirror", "md5": md5_of(archive)}
    with safe_open(work / "results/data/cifar10.safetensors", "pt") as data:
        assert data.get_slice("train_x").get_shape() == [200, 3, 32, 32]
        assert data.get_slice("test_x").get_shape() == [100, 3, 32, 32]


def test_the_paper_vit_trains_and_is_measured_on_cifar10(vit_on_cifar):
    import pandas as pd

    work, _ = vit_on_cifar
    metadata = json.loads((work / VIT_RUN / "metadata.json").read_text())
    assert metadata["spec"]["model"]["depth"] == 12 and metadata["spec"]["model"]["patch_size"] == 4
    assert metadata["spec"]["optimizer"]["epochs"] == 1
    layers = pd.read_parquet(work / VIT_RUN / "layers.parquet")
    # The patch embedding reads 4 × 4 patches of 3 channels; then 4 layers per block, the head.
    assert layers["d_in"].iloc[0] == 4 * 4 * 3 and len(layers) == 1 + 12 * 4 + 1
    measured = layers[["sigma_1", "rank_fro", "rel_tail_K", "tcv", "ss_ratio", "nc1", "e_norm"]]
    assert measured.notna().all().all() and (measured.abs() < float("inf")).all().all()


def test_a_corrupt_cifar10_archive_in_the_mirror_stops_with_both_checksums(tmp_path):
    archive = cifar10_archive(tmp_path / "good.tar.gz")
    bad = tmp_path / "mirror" / "cifar-10-binary.tar.gz"
    bad.parent.mkdir()
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    done = smoke_run(
        tmp_path / "work",
        "results/data/cifar10.safetensors",
        mirror=tmp_path / "mirror",
        md5=md5_of(archive),
    )
    assert done.returncode != 0
    log = (tmp_path / "work/results/logs/fetch_raw/cifar10.log").read_text()
    assert str(bad) in log and f"md5 {md5_of(bad)}, expected {md5_of(archive)}" in log
    assert "Traceback" not in log + done.stderr
    assert not (tmp_path / "work/results/raw/cifar10").exists()
