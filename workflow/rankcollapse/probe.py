"""The linear probe, the standard measure of a self-supervised representation's quality: the
network's head fitted on its frozen :func:`.models.representation` of the training set.
"""

from __future__ import annotations

import torch
from torch import nn

from . import convergence
from .losses import per_sample_loss
from .models import representation


@torch.no_grad()
def frozen_features(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    """The representation of every row of ``x``, computed in batches, without gradients."""
    model.eval()
    return torch.cat([representation(model, xb) for xb in x.split(batch)])


def fit_head(
    head: nn.Linear,
    features: torch.Tensor,
    y: torch.Tensor,
    loss: dict,
    weight_decay: float,
    steps: int,
) -> tuple[int, float, float]:
    """Fit ``head`` on fixed features: minimise the run's objective restricted to the head,

        (1/N) Σ_i ℓ(W f_i + b, y_i) + (λ/2)(‖W‖_F² + ‖b‖²),

    by ``steps`` L-BFGS iterations (strong-Wolfe line search) from the head's weights. With
    cross-entropy or MSE and λ > 0 the problem is strictly convex: its minimiser is unique.
    Returns the iterations made, the loss without penalty, and the training accuracy.
    """
    lbfgs = convergence.lbfgs(head, history_size=20)
    convergence.set_iterations(lbfgs, steps)

    def closure() -> float:
        lbfgs.zero_grad()
        out = head(features)
        value = per_sample_loss(out, y, **loss).mean()
        value = value + 0.5 * weight_decay * sum((p**2).sum() for p in head.parameters())
        value.backward()
        return float(value.detach())

    if steps:
        lbfgs.step(closure)
    iterations, _ = convergence.lbfgs_counts(lbfgs)
    with torch.no_grad():
        out = head(features)
        fitted = float(per_sample_loss(out, y, **loss).mean())
        accuracy = float((out.argmax(1) == y).float().mean())
    return iterations, fitted, accuracy
