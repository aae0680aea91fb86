"""Rule compress on a small real training: parameters as claimed, the energy search."""

import json
import math

import pytest
import torch
from factories import LOSS, trained_mlp
from rankcollapse.compress import choose_energies, compress_run, compressed
from rankcollapse.layers import utilized_layers
from rankcollapse.utilization import parameter_count
from rankcollapse.utilize import utilize_run

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
