"""Training and the measure driver on a tiny synthetic problem, on the CPU."""

import math

import pytest
import torch
from rankcollapse.extract import embedding_summaries, measure_run
from rankcollapse.measures import EmbeddingStats
from rankcollapse.models import measured_layers, mlp
from rankcollapse.training import Features, learning_rate, to_features, train_run

CPU = torch.device("cpu")


def clusters(seed=0, n=40, classes=3, dim=5) -> Features:
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(n) % classes
    x = centres[y] + 0.3 * torch.randn(n, dim, generator=g)
    return Features(x, y, x[:9], y[:9], classes)


def spec(seed=0, wd=1e-3, epochs=5) -> dict:
    return {
        "model": {"arch": "mlp", "depth": 3, "width": 16, "bias": False},
        "optimizer": {
            "lr": 0.05,
            "momentum": 0.9,
            "batch_size": 8,
            "epochs": epochs,
            "schedule": "cosine",
            "milestones": [],
            "gamma": 0.1,
        },
        "weight_decay": wd,
        "seed": seed,
    }


def weights(result) -> list[torch.Tensor]:
    return [p.detach().clone() for p in result.model.parameters()]


def test_mlp_has_depth_linear_layers_without_bias():
    model = mlp(784, 10, depth=4, width=32, bias=False)
    layers = measured_layers(model)
    assert [name for name, _ in layers] == ["layer1", "layer2", "layer3", "layer4"]
    assert [tuple(layer.weight.shape) for _, layer in layers] == [
        (32, 784),
        (32, 32),
        (32, 32),
        (10, 32),
    ]
    assert all(layer.bias is None for _, layer in layers)
    with pytest.raises(ValueError, match="depth"):
        mlp(4, 2, depth=0, width=3, bias=False)


def test_training_learns_and_is_deterministic_per_seed():
    data = clusters()
    first = train_run(spec(seed=1), data, CPU, log=lambda _: None)
    again = train_run(spec(seed=1), data, CPU, log=lambda _: None)
    other = train_run(spec(seed=2), data, CPU, log=lambda _: None)
    assert first.status == "finished" and len(first.history) == 5
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert first.history[-1]["train_acc"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(weights(first), weights(again), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(weights(first), weights(other), strict=True))


def test_weight_decay_shrinks_the_weights():
    data = clusters()
    norms = [
        sum(
            float(p.detach().norm() ** 2)
            for p in train_run(spec(wd=wd, epochs=20), data, CPU, lambda _: None).model.parameters()
        )
        for wd in (0.0, 0.05)
    ]
    assert norms[1] < norms[0]


def test_a_diverging_run_is_stopped_and_marked():
    bad = spec()
    bad["optimizer"]["lr"] = 1e12
    result = train_run(bad, clusters(), CPU, log=lambda _: None)
    assert result.status == "diverged"
    assert "non-finite loss" in result.reason
    assert len(result.history) < 5


def test_learning_rate_schedules():
    opt = {"lr": 1.0, "schedule": "cosine", "milestones": [2, 4], "gamma": 0.1}
    assert learning_rate(opt, 0, 10, 0) == 1.0
    assert learning_rate(opt, 5, 10, 0) == pytest.approx(0.5)
    assert learning_rate({**opt, "schedule": "step"}, 0, 10, 3) == pytest.approx(0.1)
    assert learning_rate({**opt, "schedule": "step"}, 0, 10, 4) == pytest.approx(0.01)
    assert learning_rate({**opt, "schedule": "constant"}, 7, 10, 9) == 1.0


def test_images_are_standardised_and_given_a_channel():
    x = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8)
    y = torch.arange(20) % 10
    f = to_features({"train_x": x, "train_y": y, "test_x": x[:5], "test_y": y[:5]}, CPU)
    assert f.train_x.shape == (20, 1, 28, 28) and f.classes == 10
    assert float(f.train_x.mean()) == pytest.approx(0, abs=1e-5)
    assert float(f.train_x.std()) == pytest.approx(1, abs=1e-4)


def test_hooked_embeddings_match_a_direct_computation():
    data = clusters()
    model = train_run(spec(), data, CPU, log=lambda _: None).model.eval()
    summaries = embedding_summaries(model, data, batch=7)
    # layer2's input is the ReLU output of layer1: compute its statistics without hooks.
    with torch.no_grad():
        z = torch.relu(model[1](model[0](data.train_x)))
    direct = EmbeddingStats(data.classes, z.shape[1])
    direct.add_to_means(z, data.train_y)
    direct.finish_means()
    direct.add_to_spread(z, data.train_y)
    for key, value in direct.summary().items():
        assert summaries["layer2"][key] == pytest.approx(value, rel=1e-9, nan_ok=True)
    # layer1's input is the data itself.
    assert summaries["layer1"]["tcv"] > 0


def test_measure_run_gives_one_finite_row_per_layer():
    data = clusters()
    model = train_run(spec(), data, CPU, log=lambda _: None).model
    rows, spectra = measure_run(model, data, [0.1, 0.01], batch=16)
    assert [r["layer"] for r in rows] == ["layer1", "layer2", "layer3"]
    assert set(spectra) == {"layer1", "layer2", "layer3"}
    for row in rows:
        for key in (
            "rank_eps_0.1",
            "rank_eps_0.01",
            "rank_fro",
            "tail_K",
            "tcv",
            "nc1",
            "ss_ratio",
            "train_acc",
        ):
            assert math.isfinite(row[key]), key
    assert rows[0]["d_in"] == 5 and rows[-1]["d_out"] == 3
