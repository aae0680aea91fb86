"""Small problems and run specs shared by the tests."""

import torch
from rankcollapse.config import spec_hash
from rankcollapse.training import Features


def clusters(n=40, classes=3, dim=5, spread=0.3, seed=0) -> Features:
    """Well-separated Gaussian clusters; the first samples double as the test set."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(n) % classes
    x = centres[y] + spread * torch.randn(n, dim, generator=g)
    return Features(x, y, x[: n // 5], y[: n // 5], classes)


def run_spec(wd=1e-3, seed=0, epochs=5, arch="mlp", width=16, **optimizer) -> dict:
    """A training spec as the workflow writes it, for a tiny model."""
    spec = {
        "model": {"arch": arch, "depth": 3, "width": width, "bias": False, "channels": [2, 3]},
        "optimizer": {
            "lr": 0.05,
            "momentum": 0.9,
            "batch_size": 8,
            "epochs": epochs,
            "schedule": "cosine",
            "milestones": [],
            "gamma": 0.1,
            "full_batch_steps": 0,
            "full_batch_lr": 0.05,
            "residual_every": 10,
            **optimizer,
        },
        "loss": "cross_entropy",
        "weight_decay": wd,
        "seed": seed,
    }
    return {**spec, "config_hash": spec_hash(spec)}
