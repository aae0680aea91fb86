"""Training and the measure driver on a tiny synthetic problem, on the CPU."""

import math

import pytest
import torch
from factories import clusters
from factories import run_spec as spec
from rankcollapse import sgd
from rankcollapse.features import to_features
from rankcollapse.train import train_run

CPU = torch.device("cpu")


def weights(result) -> list[torch.Tensor]:
    return [p.detach().clone() for p in result.model.parameters()]


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


def test_images_are_standardised_and_given_a_channel():
    x = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8)
    y = torch.arange(20) % 10
    f = to_features({"train_x": x, "train_y": y, "test_x": x[:5], "test_y": y[:5]}, CPU)
    assert f.train_x.shape == (20, 1, 28, 28) and f.classes == 10
    assert float(f.train_x.mean()) == pytest.approx(0, abs=1e-5)
    assert float(f.train_x.std()) == pytest.approx(1, abs=1e-4)


# Each of these reads a tensor's value on the host: on a GPU, a wait for all queued work.
HOST_READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__")


def host_reads(monkeypatch, run: dict, data) -> int:
    count = 0

    def counting(original):
        def read(*args, **kwargs):
            nonlocal count
            count += 1
            return original(*args, **kwargs)

        return read

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    train_run(run, data, CPU, log=lambda _: None)
    monkeypatch.undo()
    return count


def test_steps_read_nothing_on_the_host(monkeypatch):
    """Host reads come with the history records only: four times the SGD steps per epoch read
    no more. (The convergence phase reads F at each line-search point: L-BFGS decides on it.)
    """
    data = clusters(n=128)
    few = spec(epochs=2, batch_size=32)
    many = spec(epochs=2, batch_size=8)
    reads = [host_reads(monkeypatch, run, data) for run in (few, many)]
    assert reads[0] > 0  # the records read the losses they write
    assert reads[1] == reads[0]


def test_mse_training_uses_the_summed_squared_error():
    run = spec()
    run["loss"], run["target_scale"] = "mse", 2.0
    result = train_run(run, clusters(), CPU, log=lambda _: None)
    assert result.status == "finished"
    assert result.history[-1]["full_loss"] < result.history[0]["full_loss"]


def test_a_decay_horizon_sets_the_epochs_a_run_trains_for():
    data = clusters()
    run = spec(wd=0.05, epochs=2, decay_horizon=2.0, max_epochs=40)
    result = train_run(run, data, CPU, log=lambda _: None)
    steps = math.ceil(len(data.train_y) / run["optimizer"]["batch_size"])
    assert result.epochs == sgd.epochs_for(run["optimizer"], 0.05, steps)
    assert 2 < result.epochs < 40
    assert sum(row["phase"] == "sgd" for row in result.history) == result.epochs
    assert sgd.decay_exponent(run["optimizer"], 0.05, steps, result.epochs) >= 2.0
