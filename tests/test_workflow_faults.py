"""Faults met through the repository's Snakefile on the tiny config: bad configs and targets
refused before any job, a corrupt raw file (the other runs kept), divergence set to fail the
job, a failing figure notebook kept with its traceback, and overrides on the command line.
"""

import json
import shutil

import pandas as pd
import pytest
import yaml
from rankcollapse import files
from workflow_runner import REPO, snakemake


def test_a_single_figure_is_a_target(tmp_path):
    config = tmp_path / "one.yaml"
    shutil.copy(REPO / "tests/configs/tiny.yaml", config)
    done = snakemake(
        tmp_path, "-n", "results/figures/tiny/rank_vs_weight_decay.pdf", configfile=config
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank_vs_variability" not in done.stdout


BAD_CONFIG_EDITS = {
    "negative λ": (
        ("weight_decay: [0, 1.0e-3,", "weight_decay: [0, -1.0e-3,"),
        ["studies.tiny.weight_decay[1]", "minimum of 0"],
    ),
    "command in λ": (
        ("weight_decay: [0, 1.0e-3,", "weight_decay: [0, '1e-3; touch pwned',"),
        ["studies.tiny.weight_decay[1]", "not of type 'number'"],
    ),
    "study defined twice": (
        ("studies:\n", "studies:\n  tiny:\n    datasets: [clusters_a]\n    weight_decay: [0]\n"),
        ["key 'tiny' is given twice", "lines"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG_EDITS))
def test_a_bad_config_stops_before_any_job(tmp_path, case):
    (old, new), expected = BAD_CONFIG_EDITS[case]
    config = tmp_path / "bad.yaml"
    text = (REPO / "tests/configs/tiny.yaml").read_text()
    assert old in text
    config.write_text(text.replace(old, new))
    done = snakemake(tmp_path, "--cores", "1", configfile=config)
    assert done.returncode != 0
    for words in expected:
        assert words in done.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "pwned").exists()


def test_an_unsafe_weight_decay_in_a_target_path_is_refused(tmp_path):
    done = snakemake(
        tmp_path,
        "-n",
        "results/runs/tiny/clusters_a/wd~1e-3;touch x/seed~0/model.safetensors",
        configfile=REPO / "tests/configs/tiny.yaml",
    )
    assert done.returncode != 0
    assert "MissingRuleException" in done.stdout + done.stderr


def test_a_corrupt_raw_file_is_refused_and_other_runs_are_kept(tmp_path):
    mirror = tmp_path / "mirror/mnist"
    mirror.mkdir(parents=True)
    (mirror / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(100))
    config = tmp_path / "corrupt.yaml"
    text = (REPO / "tests/configs/tiny.yaml").read_text()
    config.write_text(text + f"data:\n  mirror: {tmp_path / 'mirror'}\n")
    # The MNIST dataset and the measures of the synthetic runs, asked for together.
    targets = ["results/data/mnist_small.safetensors"] + [
        f"results/runs/tiny/clusters_a/wd~{wd}/seed~0/layers.parquet" for wd in ("0", "0.001")
    ]
    # No --keep-going: profiles/default, loaded without being named, keeps going.
    done = snakemake(tmp_path, "--cores", "2", *targets, configfile=config)
    assert done.returncode != 0
    log = (tmp_path / "results/logs/fetch_raw/mnist.log").read_text()
    assert "train-labels-idx1-ubyte" in log and "a25bea736e30d166cdddb491f175f624" in log
    assert "data.mirror" in log
    # keep-going: the synthetic runs, which need no MNIST, finished and stay.
    for wd in ("0", "0.001"):
        assert (tmp_path / f"results/runs/tiny/clusters_a/wd~{wd}/seed~0/layers.parquet").exists()


def test_divergence_can_fail_the_job_instead(tmp_path):
    config = tmp_path / "strict.yaml"
    text = (REPO / "tests/configs/tiny.yaml").read_text()
    config.write_text(text + "training:\n  divergence: fail\n")
    target = "results/runs/tiny/clusters_a/wd~1000/seed~0/model.safetensors"
    done = snakemake(tmp_path, "--cores", "1", target, configfile=config)
    assert done.returncode != 0
    log = (tmp_path / "results/logs/train/tiny/clusters_a/wd~1000/seed~0.log").read_text()
    assert "run diverged (non-finite loss in sgd" in log and "divergence: record" in log
    assert not (tmp_path / target).exists()


def test_a_failing_notebook_is_kept_with_its_traceback_and_named(tmp_path):
    # The tiny study alone, on one synthetic dataset.
    config = tmp_path / "one.yaml"
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    tiny["studies"] = {"tiny": {**tiny["studies"]["tiny"], "datasets": ["clusters_a"]}}
    tiny["utilization"]["studies"] = ["tiny"]
    config.write_text(yaml.safe_dump(tiny))
    table = tmp_path / "results/tables/tiny/layers.parquet"
    done = snakemake(tmp_path, "--cores", "2", str(table.relative_to(tmp_path)), configfile=config)
    assert done.returncode == 0, done.stderr[-3000:]
    # A table without the columns the notebook reads makes one of its cells fail.
    files.write_table(table, pd.DataFrame({"study": ["tiny"]}))
    figure = "results/figures/tiny/rank_vs_weight_decay.pdf"
    done = snakemake(tmp_path, "--cores", "1", figure, configfile=config)
    assert done.returncode != 0
    log = (tmp_path / "results/logs/figure/tiny/rank_vs_weight_decay.log").read_text()
    assert 'Exception encountered at "In [' in log and "KeyError" in log
    assert "figure notebook notebooks/rank_vs_weight_decay.py failed" in log
    kept = tmp_path / "results/logs/figure/tiny/rank_vs_weight_decay.ipynb"
    assert "kept at" in log and str(kept.relative_to(tmp_path)) in log
    cells = json.loads(kept.read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "KeyError"
    assert not (tmp_path / figure).exists()
    assert not (tmp_path / "results/notebooks/tiny/rank_vs_weight_decay.ipynb").exists()


@pytest.mark.parametrize(
    "target",
    [
        "results/tables/nostudy/layers.parquet",
        "results/runs/tiny/nodata/wd~0/seed~0/layers.parquet",
        "results/runs/tiny/clusters_a/wd~0.5/seed~0/model.safetensors",
        "results/runs/tiny/clusters_a/wd~0/seed~9/model.safetensors",
        # a supervised study has no pre-trained twin to draw beside it
        "results/figures/tiny/ssl_utilization.pdf",
    ],
)
def test_a_target_outside_the_config_is_refused_before_any_job(tmp_path, target):
    done = snakemake(tmp_path, "-n", target, configfile=REPO / "tests/configs/tiny.yaml")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert f"No rule to produce {target}" in output and "Traceback" not in output


def test_a_nested_override_on_the_command_line_works(tmp_path):
    # Snakemake passes nested --config values as text ('2'); the workflow reads the number.
    config = REPO / "tests/configs/tiny.yaml"
    done = snakemake(
        tmp_path, "-n", "--cores", "2", "--config", "threads={train: 2}", configfile=config
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "threads: 2" in done.stdout + done.stderr
