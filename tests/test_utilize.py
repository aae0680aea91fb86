"""Rule utilize on small real trainings: consistent rows, ViT tokens as samples, the
random-initialisation baseline.
"""

import copy
import math

import pytest
import torch
from factories import LOSS, clusters, run_spec, trained_mlp
from rankcollapse.features import Features
from rankcollapse.measure import measure_run
from rankcollapse.models import initial_model
from rankcollapse.train import train_run
from rankcollapse.utilize import INIT_COLUMNS, utilize_run


@pytest.fixture(scope="module")
def trained():
    return trained_mlp()


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


def test_vit_layers_take_tokens_as_calibration_samples():
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


def test_the_baseline_of_an_untrained_network_is_its_own_utilization(trained):
    model, data = trained
    energies = [0.5, 0.9, 0.99, 1.0]
    rows, _ = utilize_run(model, data, energies, 10_000, 50, LOSS, copy.deepcopy(model))
    for row in rows:
        assert row["init_utilization"] == row["utilization"]
        assert row["init_svd_utilization"] == row["svd_utilization"]
        assert row["init_k_S_fraction"] == row["k_S_fraction"]
        assert row["init_k_T_fraction"] == row["k_T_fraction"]
    # without an initial network, the baseline columns are there and NaN
    rows, _ = utilize_run(model, data, [0.9], 10_000, 50, LOSS)
    assert all(math.isnan(row[c]) for row in rows for c in INIT_COLUMNS)
    assert all(row["test_samples"] == len(data.test_y) for row in rows)


def test_the_baseline_regenerates_the_runs_initial_weights_from_its_seed():
    data = clusters(n=120, classes=3, dim=12)
    spec = {**run_spec(wd=1e-3, epochs=0, width=24, seed=3), "study": "t"}
    untrained = train_run(spec, data, torch.device("cpu"), log=lambda _: None).model
    initial = initial_model(spec["model"], data.in_shape, data.classes, spec["seed"])
    rows, _ = utilize_run(untrained, data, [0.9, 0.99], 10_000, 50, LOSS, initial)
    for row in rows:
        assert row["init_utilization"] == row["utilization"]
        assert row["init_svd_utilization"] == row["svd_utilization"]
    # a trained run: the baseline is finite, a fraction, and the first layer's input subspace
    # (the data's, the same calibration samples) is the trained network's
    trained_spec = {**spec, "epochs": 10}
    trained_spec["optimizer"] = {**spec["optimizer"], "epochs": 10}
    model = train_run(trained_spec, data, torch.device("cpu"), log=lambda _: None).model
    rows, _ = utilize_run(model, data, [0.9, 0.99], 10_000, 50, LOSS, initial)
    for row in rows:
        for column in INIT_COLUMNS:
            assert math.isfinite(row[column]) and 0 <= row[column] <= 1
        if row["layer"] == "layer1":
            assert row["init_k_S_fraction"] == row["k_S_fraction"]
