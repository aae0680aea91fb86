"""Synthetic Gaussian clusters: shapes, balance, determinism and spread."""

import pytest
import torch
from rankcollapse.synthetic import gaussian_clusters


def test_gaussian_clusters_shapes_balance_and_determinism():
    kwargs = dict(classes=4, dim=8, per_class=30, test_per_class=10, std=0.5, clusters_per_class=2)
    kwargs["separation"] = 1.0
    tensors = gaussian_clusters(**kwargs, seed=3)
    assert tensors["train_x"].shape == (120, 8) and tensors["train_x"].dtype == torch.float32
    assert tensors["test_x"].shape == (40, 8) and tensors["test_y"].dtype == torch.int64
    assert torch.bincount(tensors["train_y"]).tolist() == [30] * 4
    assert torch.bincount(tensors["test_y"]).tolist() == [10] * 4
    again = gaussian_clusters(**kwargs, seed=3)
    assert all(torch.equal(tensors[k], again[k]) for k in tensors)
    other = gaussian_clusters(**kwargs, seed=4)
    assert not torch.equal(tensors["train_x"], other["train_x"])


def test_gaussian_clusters_spread_is_std():
    std, dim = 0.3, 50
    tensors = gaussian_clusters(
        classes=5,
        dim=dim,
        per_class=2000,
        test_per_class=1,
        std=std,
        clusters_per_class=1,
        separation=1.0,
        seed=0,
    )
    x, y = tensors["train_x"].double(), tensors["train_y"]
    spreads = [
        ((x[y == k] - x[y == k].mean(0)).pow(2).sum(1).mean() / dim).sqrt() for k in range(5)
    ]
    assert float(torch.stack(spreads).mean()) == pytest.approx(std, rel=0.02)


# --- storage --------------------------------------------------------------------------------
