"""The whole DAG through Snakemake on the tiny config: real MNIST subset, synthetic clusters."""

import json
import math
import subprocess

import pandas as pd
import pytest
from rankcollapse.config import spec_hash
from rankcollapse.convergence import NO_DECAY, STEPS_SPENT
from workflow_runner import REPO, cli, run_files, snakemake

FIGURES = [
    "rank_vs_weight_decay",
    "variability_vs_weight_decay",
    "rank_vs_variability",
    "proportionality",
    "spectra",
    "bound",
    "rank_vs_spread",
    "training_curves",
    "stationarity",
    # paper B, the tiny study being listed in utilization.studies
    "utilization_per_layer",
    "mlu_vs_weight_decay",
    "compression",
    "subspace_ranks",
]


# tiny_run (tests/conftest.py): the whole DAG of tests/configs/tiny.yaml, run once per session.


def test_tables_hold_every_run_and_layer_with_finite_measures(tiny_run):
    everything = pd.read_parquet(tiny_run / "results/tables/tiny/layers.parquet")
    # λ = 1000 diverges: one marked row per run, with the epoch and the reason.
    diverged = everything[everything["weight_decay"] == 1000]
    assert len(diverged) == 3 and (diverged["status"] == "diverged").all()
    assert diverged["reason"].str.match(r"non-finite loss in sgd \d").all()
    assert diverged["layer"].isna().all()
    table = everything[everything["weight_decay"] < 1000]
    # 3 datasets x 2 weight decays x 1 seed x 3 layers
    assert len(table) == 18
    assert set(table["dataset"]) == {"mnist_small", "clusters_a", "clusters_b"}
    assert sorted(table["weight_decay"].unique()) == [0, 1e-3]
    assert (table["status"] == "finished").all()
    # Every row carries its run's certificate: λ = 0 has none to give; 4 L-BFGS iterations
    # are not enough for 1e-2 on a ReLU net, so the λ > 0 runs are finished but uncertified.
    assert not table["stationary"].any() and (table["stationarity_tol"] == 0.01).all()
    assert (table.loc[table["weight_decay"] == 0, "stop_reason"] == NO_DECAY).all()
    decayed = table[table["weight_decay"] > 0]
    assert (decayed["stop_reason"] == STEPS_SPENT).all() and (
        decayed["convergence_steps"] == 4
    ).all()
    assert (decayed["certified_rel_residual"] > 0.01).all()
    # the certificate is measured again from the saved weights: the same worst layer
    worst = decayed.groupby("dataset").agg(
        measured=("rel_residual", "max"), certified=("certified_rel_residual", "first")
    )
    assert ((worst["measured"] - worst["certified"]).abs() <= 1e-6 * worst["certified"]).all()
    # after so short a training every layer still points mostly along its initial matrix
    assert table["init_share"].map(math.isfinite).all() and (table["init_share"] > 0).all()
    assert table["init_cosine"].between(0.2, 1.0).all()
    measures = [
        "rank_eps_0.1",
        "rank_eps_0.01",
        "rank_eps_0.001",
        "rank_fro",
        "stable_rank",
        "effective_rank",
        "tail_K",
        "rel_tail_K",
        "sigma_ratio_K",
        "tcv",
        "ss_within",
        "ss_ratio",
        "nc1",
        "cdnv",
        "train_acc",
        "test_acc",
    ]
    for column in measures:
        assert table[column].map(math.isfinite).all(), column
    # The values themselves are recomputed independently in tests/test_oracles.py.


def test_history_and_spectra_tables(tiny_run):
    history = pd.read_parquet(tiny_run / "results/tables/tiny/history.parquet")
    history = history[history["status"] == "finished"]
    # per run: 2 SGD epochs; then, where λ > 0, L-BFGS records at iterations 2 and 4
    phases = history.groupby(["weight_decay", "dataset"])["phase"].apply(list)
    assert (phases.xs(0.0) == pd.Series([["sgd", "sgd"]] * 3, index=phases.xs(0.0).index)).all()
    assert phases.xs(1e-3).map(lambda p: p == ["sgd", "sgd", "convergence", "convergence"]).all()
    assert history.loc[history["phase"] == "convergence", "epoch"].tolist() == [2, 4] * 3
    assert history["residual"].map(math.isfinite).all()
    # F is the record's own column: the run's `objective` (supervised) does not replace it.
    assert history["full_objective"].map(math.isfinite).all()
    assert (history["objective"] == "supervised").all()
    spectra = pd.read_parquet(tiny_run / "results/tables/tiny/spectra.parquet")
    # λ = 1000 diverges: one marked row per run, with the epoch and the reason, no values.
    diverged = spectra[spectra["weight_decay"] == 1000]
    assert len(diverged) == 3 and (diverged["status"] == "diverged").all()
    assert diverged["reason"].str.match(r"non-finite loss in sgd \d").all()
    assert diverged[["layer", "index", "sigma"]].isna().all(axis=None)
    # min(d_out, d_in) singular values per layer: 32 + 32 + 10 (MNIST) or 16 + 32 + 4 (clusters)
    counts = spectra[spectra["status"] == "finished"].groupby(["dataset", "weight_decay"]).size()
    assert counts.xs("mnist_small").tolist() == [74, 74]
    assert counts.xs("clusters_a").tolist() == [52, 52]


def test_claims_are_reported_with_a_verdict_each(tiny_run):
    claims = json.loads((tiny_run / "results/claims.json").read_text())
    ids = [c["id"] for c in claims["claims"]]
    assert ids == [*"C1 C2 C3a C3b C4 C5 P U1 U2 U3 U4 U5 UI U6".split()]
    statuses = {"holds", "does not hold", "inconclusive", "not testable at this scale", "not run"}
    assert all(c["verdict"] in statuses for c in claims["claims"])
    verdicts = {c["id"]: c for c in claims["claims"]}
    # one finished λ > 0 is not a sweep...
    assert verdicts["C1"]["verdict"] == "not run"
    # ...but the bound is checked on every layer of every run with λ > 0: 3 datasets x 3 layers
    assert verdicts["C3a"]["statistic"].startswith("9 rows checked")
    assert verdicts["C3a"]["kind"] == "check of the implementation"
    # the tiny runs are not certified (2 L-BFGS steps): C3b has nothing to count
    assert "not certified" in " ".join(claims["not_counted"])
    # paper B: the 3 reference runs (λ = 0, one per dataset) give an interval, the untrained
    # networks a control row beside it
    trained, untrained = verdicts["U1"]["details"]
    assert trained["n"] == 3 and trained["low"] <= trained["value"] <= trained["high"]
    assert untrained["outcome"] == "control"
    assert verdicts["U5"]["verdict"] == "not run"  # two λ values again
    assert verdicts["UI"]["verdict"] == "not testable at this scale"
    markdown = (tiny_run / "results/claims.md").read_text()
    assert "C1" in markdown and "C5" in markdown and "U4" in markdown
    assert "tiny/clusters_a λ=1000 seed 0: diverged (non-finite loss in sgd" in markdown
    assert all(len(c["left_out"]) == 3 for c in claims["claims"])
    # The pre-trained run enters U6 only, paired with tiny's run of its dataset, λ and seed:
    # one pair has no interval, so the claim cannot be decided.
    assert not any("tiny_simclr" in line for line in claims["not_counted"])
    assert all(d["study"] == "tiny" for d in verdicts["U1"]["details"])
    (pair,) = verdicts["U6"]["details"]
    assert pair["study"] == "tiny_simclr" and pair["compared_with"] == "tiny"
    assert pair["n"] == 1 and pair["outcome"] == "too few points"
    assert verdicts["U6"]["verdict"] == "inconclusive"
    for key in ("mlu_pretrained", "mlu_supervised", "mlu_untrained"):
        assert 0 < pair[key] <= 1
    for key in ("probe_test_acc", "finetune_test_acc", "supervised_test_acc"):
        assert 0.2 < pair[key] <= 1  # well above chance on 10 classes


def test_a_pretraining_run_is_an_ordinary_run(tiny_run):
    run = tiny_run / "results/runs/tiny_simclr/mnist_small/wd~0.001/seed~0"
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["spec"]["objective"] == "simclr" and meta["status"] == "finished"
    history = pd.read_csv(run / "history.csv")
    assert history["phase"].tolist() == ["pretraining"] * 2 + ["probe", "finetune"]
    layers = pd.read_parquet(tiny_run / "results/tables/tiny_simclr/layers.parquet")
    assert set(layers["objective"]) == {"simclr"} and len(layers) == 3
    assert math.isclose(layers["finetune_test_acc"].iloc[0], meta["finetune_test_acc"])
    utilization = pd.read_parquet(tiny_run / "results/tables/tiny_simclr/utilization.parquet")
    assert len(utilization) == 6 and utilization["utilization"].between(0, 1).all()
    for path in (
        "results/figures/tiny_simclr/ssl_utilization.pdf",
        "results/figures/tiny_simclr/ssl_utilization.png",
        "results/notebooks/tiny_simclr/ssl_utilization.ipynb",
    ):
        assert (tiny_run / path).stat().st_size > 0, path
    # Paper A's figures are drawn for supervised studies only.
    assert not (tiny_run / "results/figures/tiny_simclr/rank_vs_weight_decay.pdf").exists()


def test_utilization_and_compression_tables(tiny_run):
    table = pd.read_parquet(tiny_run / "results/tables/tiny/utilization.parquet")
    assert (table.loc[table["weight_decay"] == 1000, "status"] == "diverged").sum() == 3
    table = table[table["status"] == "finished"]
    # 3 datasets x 2 weight decays x 3 layers x 2 energies
    assert len(table) == 36
    assert sorted(table["energy"].unique()) == [0.9, 0.99]
    assert (table["rank"] <= table[["k_S", "k_T"]].min(axis=1)).all()
    assert table["utilization"].between(0, 1).all()
    assert table["rel_output_error"].map(math.isfinite).all()
    ranks = table.pivot_table(
        index=["dataset", "weight_decay", "layer"], columns="energy", values="rank"
    )
    assert (ranks[0.9] <= ranks[0.99]).all()
    compression = pd.read_parquet(tiny_run / "results/tables/tiny/compression.parquet")
    compression = compression[compression["status"] == "finished"]
    # 6 runs x 1 energy x 2 methods x 2 stages
    assert len(compression) == 24
    assert set(compression["method"]) == {"data_driven", "svd"}
    assert compression["test_acc"].between(0, 1).all()
    factorized = compression[compression["layers_factorized"] > 0]
    assert (factorized["param_fraction"] < 1).all()


def test_compression_at_searched_energies_through_the_command_line(tiny_run):
    run = tiny_run / "results/runs/tiny/clusters_a/wd~0.001/seed~0"
    out = tiny_run / "search.parquet"
    args = ["compress", *run_files(tiny_run / "results/data/clusters_a.safetensors", run)]
    args += ["--moments", str(run / "moments.safetensors"), "--energy", "search"]
    args += ["--table", str(out), "--finetune-epochs", "1", "--finetune-lr", "0.01"]
    args += ["--search-energies", "0.9", "0.99", "--tolerance", "0.005"]
    args += ["--batch-size", "2000", "--device", "cpu", "--threads", "1"]
    job = cli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = job.communicate()
    assert job.returncode == 0, stderr[-3000:]
    table = pd.read_parquet(out)
    assert len(table) == 4 and (table["selection"] == "search").all()
    chosen = json.loads(table["layer_energies"].iloc[0])
    assert set(chosen) == {"layer1", "layer2", "layer3"}
    assert set(chosen.values()) <= {0.9, 0.99, 1.0}
    assert "energies chosen on 40 validation samples" in stdout


def test_raw_mnist_files_were_verified(tiny_run):
    provenance = (tiny_run / "results/raw/mnist/provenance.json").read_text()
    assert "6bbc9ace898e44ae57da46a324031adb" in provenance


def test_figures_and_executed_notebooks_exist(tiny_run):
    for figure in FIGURES:
        for path in (
            f"results/figures/tiny/{figure}.pdf",
            f"results/figures/tiny/{figure}.png",
            f"results/notebooks/tiny/{figure}.ipynb",
        ):
            assert (tiny_run / path).stat().st_size > 0, path
        executed = (tiny_run / f"results/notebooks/tiny/{figure}.ipynb").read_text()
        assert '"papermill"' in executed and "injected-parameters" in executed
        assert "mnist_small λ=1000 seed 0: diverged" in executed, figure


def test_the_claims_overview_is_drawn(tiny_run):
    for path in (
        "results/figures/claims_overview.pdf",
        "results/figures/claims_overview.png",
        "results/notebooks/claims_overview.ipynb",
    ):
        assert (tiny_run / path).stat().st_size > 0, path
    executed = (tiny_run / "results/notebooks/claims_overview.ipynb").read_text()
    assert '"papermill"' in executed and "injected-parameters" in executed


def test_report_is_written(tiny_run):
    report = tiny_run / "results/report.html"
    done = snakemake(tiny_run, "--report", str(report), configfile=REPO / "tests/configs/tiny.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert report.stat().st_size > 10_000


def test_nothing_left_to_do_after_a_run(tiny_run):
    done = snakemake(tiny_run, "-n", configfile=REPO / "tests/configs/tiny.yaml")
    assert done.returncode == 0
    assert "Nothing to be done" in done.stdout + done.stderr


PROVENANCE = ["config_hash", "git_commit", "python", "torch", "device", "seed", "status"]


@pytest.mark.parametrize("name", ["layers", "history", "spectra"])
def test_every_table_row_carries_its_provenance(tiny_run, name):
    table = pd.read_parquet(tiny_run / f"results/tables/tiny/{name}.parquet")
    assert len(table) and table[PROVENANCE].notna().all().all()
    assert (table["device"] == "cpu").all() and table["git_commit"].str.len().ge(40).all()
    # The config hash is the hash of the run's spec, kept beside its weights.
    for row in table.drop_duplicates("config_hash").itertuples():
        run = f"results/runs/tiny/{row.dataset}/wd~{row.weight_decay:g}/seed~{row.seed}"
        spec = json.loads((tiny_run / run / "metadata.json").read_text())["spec"]
        assert spec.pop("config_hash") == row.config_hash == spec_hash(spec)


def test_tables_do_not_depend_on_how_the_runs_were_packed(tiny_run, tmp_path):
    """The tiny DAG trained its runs three to a job (packs of up to 8); trained one per job
    (`training.pack: 1`), every table of the study is the same, but for clock times and the
    commit.
    """
    config = tmp_path / "one_per_job.yaml"
    text = (REPO / "tests/configs/tiny.yaml").read_text()
    config.write_text(text + "training:\n  pack: 1\n")
    tables = [f"results/tables/tiny/{name}.parquet" for name in ("layers", "history", "spectra")]
    done = snakemake(tmp_path, "--cores", "2", *tables, configfile=config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        "in a pack of 3"
        in (tiny_run / "results/logs/train/tiny/clusters_a/wd~0/seed~0.log").read_text()
    )
    for table in tables:
        alone, packed = (pd.read_parquet(root / table) for root in (tmp_path, tiny_run))
        timing = {"git_commit", "seconds", "train_seconds"}
        compared = [c for c in packed.columns if c not in timing]
        assert list(alone.columns) == list(packed.columns)
        pd.testing.assert_frame_equal(alone[compared], packed[compared], check_exact=True)
