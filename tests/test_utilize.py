"""Rule utilize on small real trainings: consistent rows, ViT tokens as samples."""

import pytest
import torch
from factories import LOSS, run_spec, trained_mlp
from rankcollapse.features import Features
from rankcollapse.measure import measure_run
from rankcollapse.train import train_run
from rankcollapse.utilize import utilize_run


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
