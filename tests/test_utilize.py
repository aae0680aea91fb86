"""Paper B on trained networks: utilize_run and compress_run on small real trainings."""

import json
import math

import pytest
import torch
from factories import clusters, run_spec
from rankcollapse.training import Features, train_run
from rankcollapse.utilization import parameter_count
from rankcollapse.utilize import compress_run, compressed, utilize_run, utilized_layers

LOSS = {"loss": "cross_entropy", "target_scale": 1.0}
FINETUNE = {"epochs": 1, "lr": 0.01, "momentum": 0.9, "batch_size": 16, "weight_decay": 1e-3}


@pytest.fixture(scope="module")
def trained():
    data = clusters(n=120, classes=3, dim=12)
    spec = {**run_spec(wd=1e-3, epochs=10, width=24), "study": "t"}
    model = train_run(spec, data, torch.device("cpu"), log=lambda _: None).model
    as_double = Features(
        data.train_x.double(), data.train_y, data.test_x.double(), data.test_y, data.classes
    )
    return model.double(), as_double


def test_utilize_rows_are_consistent(trained):
    model, data = trained
    energies = [0.5, 0.9, 0.99, 1.0]
    rows, moments = utilize_run(model, data, energies, 10_000, 50, LOSS)
    assert len(rows) == 3 * len(energies)
    assert set(moments) == {"layer1", "layer2", "layer3"}
    for row in rows:
        assert row["rank"] <= min(row["k_S"], row["k_T"])
        assert 0 <= row["utilization"] <= 1 and 0 < row["svd_utilization"] <= 1
        assert row["calibration_samples"] == 120
    by_layer = {}
    for row in rows:
        by_layer.setdefault(row["layer"], []).append(row)
    for layer_rows in by_layer.values():
        ranks = [r["rank"] for r in layer_rows]
        assert ranks == sorted(ranks)
    exact = [r for r in rows if r["energy"] == 1.0]
    # the test set is part of the calibration (training) set here, so e = 1 is exact on it
    assert all(r["rel_output_error"] < 1e-8 for r in exact)
    assert exact[0]["network_rel_error"] < 1e-8
    assert exact[0]["network_test_acc"] == exact[0]["test_acc"]
    low = [r for r in rows if r["energy"] == 0.5]
    assert low[0]["network_rel_error"] > exact[0]["network_rel_error"]


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


def test_vit_layers_take_tokens_as_calibration_samples():
    from rankcollapse.extract import measure_run

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].sum((1, 2)) > 0).long() + (x[:, 0, 4:].sum((1, 2)) > 0).long()
    data = Features(x, y, x[:20], y[:20], 3)
    spec = {**run_spec(wd=1e-3, epochs=3), "study": "t"}
    spec["model"] = {
        "arch": "vit",
        "depth": 1,
        "width": 24,
        "bias": True,
        "dim": 16,
        "heads": 2,
        "patch_size": 4,
        "pool": "mean",
    }
    model = train_run(spec, data, torch.device("cpu"), log=lambda _: None).model
    rows, moments = utilize_run(model, data, [0.9, 1.0], 1000, 25, LOSS)
    assert [r["kind"] for r in rows[:4]] == ["qkv", "proj", "fc1", "fc2"]
    # 60 images × 4 patches (mean pooling: no class token) per layer
    assert all(r["calibration_samples"] == 60 for r in rows)
    assert moments["layer2"].shape == (16, 16) and moments["layer5"].shape == (24, 24)
    exact = [r for r in rows if r["energy"] == 1.0]
    assert all(r["rel_output_error"] < 1e-5 for r in exact)
    # the rank-collapse measures run on the same ViT (tokens as rows) and the bound holds
    layer_rows, _ = measure_run(model, data, [0.01], 25, 1e-3, LOSS)
    assert len(layer_rows) == 6
    assert all(r["bound_holds"] for r in layer_rows)


def test_energy_search_picks_the_lowest_energy_within_the_tolerance(trained):
    from rankcollapse.utilize import search_energies

    model, data = trained
    _, moments = utilize_run(model, data, [0.5], 10_000, 50, LOSS)
    energies = [0.5, 0.9, 0.99]
    args = (model, data.test_x, data.test_y, moments, energies)
    assert set(search_energies(*args, 1.0, 50, LOSS).values()) == {0.5}  # any drop allowed
    assert set(search_energies(*args, -1.0, 50, LOSS).values()) == {1.0}  # none allowed
    choice = search_energies(*args, 0.02, 50, LOSS)
    assert set(choice) == {"layer1", "layer2", "layer3"}
    rows = compress_run(
        model, data, moments, choice, {**FINETUNE, "epochs": 0, "seed": 0}, 50, LOSS, print
    )
    assert all(
        r["selection"] == "search" and json.loads(r["layer_energies"]) == choice for r in rows
    )
    assert math.isnan(rows[0]["energy"])
