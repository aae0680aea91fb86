"""The paper config at smoke scale (`--config scale=smoke`): planned with every rule of the full
protocol, and its whole DAG run for real on the CPU, CIFAR-10 from a generated archive in
CIFAR's own binary format placed in the mirror folder. The whole DAG takes about half an hour on
2 cores: its tests are marked `slow` (`make test` runs them, `make test-quick` does not).
"""

import json
import math

import pandas as pd
import pytest
from factories import cifar10_archive, validated
from rankcollapse import scale
from rankcollapse.readers import md5_of
from safetensors import safe_open
from workflow_runner import REPO, job_counts, planned_jobs, snakemake

PAPER = REPO / "config/paper.yaml"
SMOKE = ["scale=smoke", "device=cpu"]
VIT_RUN = "results/runs/vit_tiny/cifar10/wd~0.001/seed~0"
VERDICTS = {"holds", "does not hold", "inconclusive", "not testable at this scale", "not run"}
# Columns every finished layer row of a study table has a finite value in.
LAYER_MEASURES = ["sigma_1", "rank_fro", "rel_tail_K", "tcv", "ss_ratio", "nc1", "e_norm"]
UTILIZATION_MEASURES = ["k_S", "k_T", "rank", "utilization", "svd_utilization"]


def smoke_run(workdir, *targets, mirror, md5):
    data = f"data={{mirror: {mirror}, download: false, cifar10: {{md5: {md5}}}}}"
    return snakemake(workdir, "--cores", "2", *targets, "--config", *SMOKE, data, configfile=PAPER)


@pytest.fixture(scope="module")
def smoke_config():
    return scale.smoke_scale(validated(PAPER))


def test_the_smoke_scale_plans_every_rule_of_the_paper_config(tmp_path):
    full = snakemake(tmp_path, "-n", "--config", "device=cpu", configfile=PAPER)
    smoke = snakemake(tmp_path, "-n", "--config", *SMOKE, configfile=PAPER)
    assert full.returncode == 0 and smoke.returncode == 0, full.stderr + smoke.stderr
    full_jobs, smoke_jobs = job_counts(full.stdout), job_counts(smoke.stdout)
    assert smoke_jobs.keys() == full_jobs.keys()
    # 7 studies, 43 runs: one seed and the ends of each λ grid (the ViT's upper end and the λ
    # paired for U6); each run compressed at the headline energy and by the energy search.
    # Its 43 runs train in 29 jobs (the MLPs' in packs of up to 8 of a study and dataset; the
    # CNN's, the ViT's and SimCLR's one per job), the full scale's 564 in 200.
    assert smoke_jobs["train"] == 29 and smoke_jobs["compress"] == 2 * 21
    assert smoke_jobs["measure"] == 43 and smoke_jobs["total"] == 226
    assert full_jobs["train"] == 200 and full_jobs["measure"] == 564
    # A ViT's measure and utilize (hours at full scale) get 4 h of wall-clock time on a
    # cluster, every other run's an hour.
    for job in planned_jobs(full.stdout):
        if job["rule"] in ("measure", "utilize"):
            vit = "/vit_tiny" in job["output"]
            assert job["resources"]["runtime"] == ("240" if vit else "60"), job["output"]


@pytest.fixture(scope="module")
def paper_smoke(tmp_path_factory):
    """The whole DAG of the paper config at smoke scale, on 2 cores."""
    root = tmp_path_factory.mktemp("paper_smoke")
    archive = cifar10_archive(root / "mirror" / "cifar10" / "cifar-10-binary.tar.gz")
    done = smoke_run(root / "work", mirror=root / "mirror", md5=md5_of(archive))
    assert done.returncode == 0, done.stderr[-5000:]
    return root / "work", archive


@pytest.mark.slow
@pytest.mark.workflow
def test_every_study_has_every_run_measured_with_finite_values(paper_smoke, smoke_config):
    work, _ = paper_smoke
    for name, study in smoke_config["studies"].items():
        table = pd.read_parquet(work / f"results/tables/{name}/layers.parquet")
        runs = table[["dataset", "weight_decay", "seed"]].drop_duplicates()
        assert len(runs) == len(study["datasets"]) * len(study["weight_decay"]), name
        finished = table[table["status"] == "finished"]
        # λ = 0.1 may fail to train (the paper config's grid goes past it on purpose), but
        # every study keeps finished runs on every dataset.
        assert set(finished["dataset"]) == set(study["datasets"]), name
        values = finished[LAYER_MEASURES]
        assert values.map(math.isfinite).all(axis=None), name
        history = pd.read_parquet(work / f"results/tables/{name}/history.parquet")
        history = history[history["status"] == "finished"]
        # Every SGD or L-BFGS record has the full-batch objective F (a record's own column,
        # not the run's `objective`, supervised or simclr, that every row carries).
        trained = history[history["phase"].isin(["sgd", "convergence"])]
        assert trained["full_objective"].map(math.isfinite).all(), name
        assert set(history["objective"]) == {study["objective"]}, name


@pytest.mark.slow
@pytest.mark.workflow
def test_every_paper_b_study_is_utilized_and_compressed(paper_smoke, smoke_config):
    work, _ = paper_smoke
    utilization = smoke_config["utilization"]
    for name in utilization["studies"]:
        table = pd.read_parquet(work / f"results/tables/{name}/utilization.parquet")
        table = table[table["status"] == "finished"]
        assert sorted(table["energy"].unique()) == utilization["energies"], name
        assert table[UTILIZATION_MEASURES].map(math.isfinite).all(axis=None), name
        compression = pd.read_parquet(work / f"results/tables/{name}/compression.parquet")
        compression = compression[compression["status"] == "finished"]
        assert set(compression["selection"]) == {"fixed", "search"}, name
        assert compression["test_acc"].between(0, 1).all(), name


@pytest.mark.slow
@pytest.mark.workflow
def test_every_figure_is_drawn_and_every_claim_decided(paper_smoke):
    work, _ = paper_smoke
    figures = sorted((work / "results/figures").rglob("*.pdf"))
    # 6 supervised studies' figures, paper B's for 4 studies, U6's, and the claims overview.
    assert len(figures) == 68
    for pdf in figures:
        assert pdf.stat().st_size > 0 and pdf.with_suffix(".png").stat().st_size > 0, pdf
    claims = json.loads((work / "results/claims.json").read_text())["claims"]
    assert [c["id"] for c in claims] == [*"C1 C2 C3a C3b C4 C5 P U1 U2 U3 U4 U5 UI U6".split()]
    assert all(c["verdict"] in VERDICTS for c in claims)
    markdown = (work / "results/claims.md").read_text()
    assert all(c["id"] in markdown for c in claims)


@pytest.mark.slow
@pytest.mark.workflow
def test_cifar10_comes_from_the_mirror_and_is_subset(paper_smoke):
    work, archive = paper_smoke
    provenance = json.loads((work / "results/raw/cifar10/provenance.json").read_text())
    assert provenance[archive.name] == {"source": "mirror", "md5": md5_of(archive)}
    with safe_open(work / "results/data/cifar10.safetensors", "pt") as data:
        assert data.get_slice("train_x").get_shape() == [200, 3, 32, 32]
        assert data.get_slice("test_x").get_shape() == [100, 3, 32, 32]


@pytest.mark.slow
@pytest.mark.workflow
def test_the_paper_vit_trains_and_is_measured_on_cifar10(paper_smoke):
    work, _ = paper_smoke
    metadata = json.loads((work / VIT_RUN / "metadata.json").read_text())
    assert metadata["spec"]["model"]["depth"] == 12 and metadata["spec"]["model"]["patch_size"] == 4
    assert metadata["spec"]["optimizer"]["epochs"] == 1
    layers = pd.read_parquet(work / VIT_RUN / "layers.parquet")
    # The patch embedding reads 4 × 4 patches of 3 channels; then 4 layers per block, the head.
    assert layers["d_in"].iloc[0] == 4 * 4 * 3 and len(layers) == 1 + 12 * 4 + 1
    assert layers[LAYER_MEASURES].map(math.isfinite).all(axis=None)


@pytest.mark.slow
@pytest.mark.workflow
def test_nothing_left_to_do_after_the_smoke_run(paper_smoke):
    work, archive = paper_smoke
    done = smoke_run(work, "-n", mirror=archive.parents[1], md5=md5_of(archive))
    assert done.returncode == 0 and "Nothing to be done" in done.stdout + done.stderr


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
