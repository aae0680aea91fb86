"""Synthetic data: classes as mixtures of Gaussian clusters, whose within-class spread is
set directly (the knob of claim C5).
"""

from __future__ import annotations

import torch

from .files import Tensors


def gaussian_clusters(
    classes: int,
    dim: int,
    per_class: int,
    test_per_class: int,
    std: float,
    clusters_per_class: int,
    separation: float,
    seed: int,
) -> Tensors:
    """Synthetic classes, each a mixture of Gaussian clusters in R^dim.

    Model: ``classes × clusters_per_class`` centres are drawn once, c ~ N(0, separation² I).
    Sample j of class k belongs to that class's cluster ``j mod clusters_per_class`` and is
    x = c + std · N(0, I), so ``std`` is the within-cluster standard deviation per coordinate
    and separation/std sets how far apart clusters are relative to their spread, whatever
    ``dim``. Train and test sets come from the same centres; classes are balanced; x is float32,
    y int64; the result depends only on the arguments (seeded torch.Generator).
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (classes * clusters_per_class, dim)
    centres = separation * torch.randn(shape, generator=generator, dtype=torch.float32)

    def draw(n_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(classes).repeat_interleave(n_per_class)
        cluster = torch.arange(n_per_class).remainder(clusters_per_class).repeat(classes)
        noise = std * torch.randn(
            classes * n_per_class, dim, generator=generator, dtype=torch.float32
        )
        return centres[labels * clusters_per_class + cluster] + noise, labels

    train_x, train_y = draw(per_class)
    test_x, test_y = draw(test_per_class)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
