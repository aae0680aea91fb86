"""Rule compress on a small real training: parameters as claimed, the energy search, on one
half of the test set and reported on the other, fine-tuning as the config says.
"""

import json
import math
import shlex
from pathlib import Path

import pandas as pd
import pytest
import torch
from factories import LOSS, quiet, tiny_config, trained_mlp, trained_run
from rankcollapse import compress as rule
from rankcollapse import files, sgd
from rankcollapse.cli import parser
from rankcollapse.compress import choose_energies, compress, compress_run, compressed
from rankcollapse.device import CPU
from rankcollapse.features import split_test_set
from rankcollapse.layers import utilized_layers
from rankcollapse.losses import evaluate, loss_spec
from rankcollapse.utilization import parameter_count
from rankcollapse.utilize import utilize, utilize_run
from workflow_runner import planned_jobs, snakemake

REPO = Path(__file__).resolve().parents[1]

FINETUNE = {"epochs": 1, "lr": 0.01, "momentum": 0.9, "batch_size": 16, "weight_decay": 1e-3}


@pytest.fixture(scope="module")
def trained():
    return trained_mlp()


def test_compression_keeps_the_claimed_parameters(trained):
    model, data = trained
    _, moments = utilize_run(model, data, [0.9], 10_000, 50, LOSS)
    rows = compress_run(
        model, data, moments, 0.9, {**FINETUNE, "seed": 0}, 50, LOSS, log=lambda _: None
    )
    assert [(r["method"], r["stage"]) for r in rows] == [
        ("data_driven", "before"),
        ("data_driven", "after"),
        ("svd", "before"),
        ("svd", "after"),
    ]
    ranks = json.loads(rows[0]["ranks"])
    shapes = {name: tuple(m.weight.shape) for name, _, m in utilized_layers(model)}
    expected = 0
    for name, (d_out, d_in) in shapes.items():
        r = ranks[name]
        expected += (
            r * (d_in + d_out) if 0 < r and r * (d_in + d_out) < d_in * d_out else d_in * d_out
        )
    assert all(r["params"] == expected for r in rows)
    assert rows[0]["params"] == parameter_count(
        compressed(model, {n: torch.zeros(shapes[n], dtype=torch.float64) for n in shapes}, ranks)[
            0
        ]
    )
    assert all(0 <= r["test_acc"] <= 1 for r in rows)
    assert rows[1]["finetune_epochs"] == 1 and rows[0]["finetune_epochs"] == 0


def test_energy_search_picks_the_lowest_energy_within_the_tolerance(trained):
    model, data = trained
    _, moments = utilize_run(model, data, [0.5], 10_000, 50, LOSS)
    energies = [0.5, 0.9, 0.99]
    args = (model, data.test_x, data.test_y, moments, energies)
    assert set(choose_energies(*args, 1.0, 50, LOSS).values()) == {0.5}  # any drop allowed
    assert set(choose_energies(*args, -1.0, 50, LOSS).values()) == {1.0}  # none allowed
    choice = choose_energies(*args, 0.02, 50, LOSS)
    assert set(choice) == {"layer1", "layer2", "layer3"}
    rows = compress_run(
        model, data, moments, choice, {**FINETUNE, "epochs": 0, "seed": 0}, 50, LOSS, print
    )
    assert all(
        r["selection"] == "search" and json.loads(r["layer_energies"]) == choice for r in rows
    )
    assert math.isnan(rows[0]["energy"])


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A finished run of the tiny study (clusters_a, λ = 0.001) with its second moments, as
    the rule compress gets it.
    """
    root = tmp_path_factory.mktemp("compress")
    run = trained_run(root, tiny_config(), "clusters_a", "0.001")
    run["moments.safetensors"] = str(root / "moments.safetensors")
    inputs = [run[name] for name in ("data", "model.safetensors", "metadata.json")]
    utilize(
        *inputs,
        str(root / "utilization.parquet"),
        run["moments.safetensors"],
        [0.9],
        500,
        100,
        1,
        quiet,
    )
    return run


def compressed_run(run: dict, table: Path, energy: str, epochs: int = 1, lr: float = 0.01):
    inputs = [run[n] for n in ("data", "model.safetensors", "metadata.json", "moments.safetensors")]
    compress(*inputs, energy, str(table), [0.5, 0.9, 0.99], 0.005, epochs, lr, 100, "cpu", 1, quiet)
    return pd.read_parquet(table)


def test_the_rule_passes_the_fine_tuning_settings_of_the_config(tmp_path):
    target = "results/runs/tiny/clusters_a/wd~0.001/seed~0/compress/energy~0.99.parquet"
    settings = "utilization={finetune_lr: 0.037, finetune_epochs: 3}"
    config = REPO / "tests/configs/tiny.yaml"
    done = snakemake(
        tmp_path, "-n", "-p", target, "--config", "device=cpu", settings, configfile=config
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [job] = [job for job in planned_jobs(done.stdout) if job["rule"] == "compress"]
    command = shlex.split(job["shell"].split(" > ")[0])
    assert command[:3] == ["python", "-m", "rankcollapse"]
    # The arguments the command line hands to compress() (cli.main: command(**args)).
    args = vars(parser().parse_args(command[3:]))
    assert args["finetune_lr"] == 0.037 and args["finetune_epochs"] == 3


def test_compress_fine_tunes_at_the_rate_and_for_the_epochs_it_is_given(
    run_files, tmp_path, monkeypatch
):
    calls = []
    finetune = sgd.finetune

    def recorded(model, data, **settings):
        calls.append(settings)
        return finetune(model, data, **settings)

    monkeypatch.setattr(sgd, "finetune", recorded)
    table = compressed_run(run_files, tmp_path / "t.parquet", "0.99", epochs=3, lr=0.037)
    # Data-driven and plain SVD, each fine-tuned the same way.
    assert [(c["epochs"], c["lr"]) for c in calls] == [(3, 0.037)] * 2
    after = table[table["stage"] == "after"]
    assert len(after) == 2 and (after["finetune_epochs"] == 3).all()


def test_split_test_set_halves_are_disjoint_cover_it_and_do_not_change():
    for n in (80, 81):
        validation, evaluation = split_test_set(n)
        assert len(validation) == n // 2 and len(evaluation) == n - n // 2
        assert sorted(torch.cat([validation, evaluation]).tolist()) == list(range(n))
        assert all(map(torch.equal, split_test_set(n), (validation, evaluation)))


def test_the_energy_search_selects_on_one_half_and_is_reported_on_the_other(
    run_files, tmp_path, monkeypatch
):
    seen = {}
    choose, compress_rows = rule.choose_energies, rule.compress_run

    def choosing(model, x, *args):
        seen["selected on"] = x.clone()
        return choose(model, x, *args)

    def reporting(model, data, *args):
        seen["reported on"] = data.test_x.clone()
        return compress_rows(model, data, *args)

    monkeypatch.setattr(rule, "choose_energies", choosing)
    monkeypatch.setattr(rule, "compress_run", reporting)
    table = compressed_run(run_files, tmp_path / "search.parquet", "search")
    meta, features, net = files.load_run(
        run_files["metadata.json"], run_files["model.safetensors"], run_files["data"], CPU
    )

    def rows(x: torch.Tensor) -> set[tuple]:
        return {tuple(row) for row in x.tolist()}

    selected, reported = rows(seen["selected on"]), rows(seen["reported on"])
    assert len(selected) == len(seen["selected on"]) == len(features.test_y) // 2
    assert not selected & reported and selected | reported == rows(features.test_x)
    # What the table reports, the network before compression included, is the other half's.
    _, evaluation = split_test_set(len(features.test_y))
    x, y = features.test_x[evaluation], features.test_y[evaluation]
    loss, accuracy = evaluate(net, x, y, 100, loss_spec(meta["spec"]))
    assert (table["selection"] == "search").all()
    assert (table["original_test_loss"] == loss).all() and (
        table["original_test_acc"] == accuracy
    ).all()
