"""Per-sample training losses; the objective is their mean plus (λ/2) Σ_l ||W_l||_F²."""

from __future__ import annotations

import torch
from torch.nn import functional


def per_sample_loss(out: torch.Tensor, y: torch.Tensor, loss: str, target_scale: float = 1.0):
    """loss_i for each sample: cross_entropy −log softmax(f(x_i))_{y_i}, or mse
    ½ ||f(x_i) − s e_{y_i}||² with one-hot targets scaled by s = ``target_scale``.

    MSE is summed over outputs (not averaged as torch's MSELoss does), so that the mean over
    samples is the loss of SCIENCE.md and λ keeps its meaning.
    """
    if loss == "cross_entropy":
        return functional.cross_entropy(out, y, reduction="none")
    if loss == "mse":
        target = functional.one_hot(y, out.shape[1]).to(out.dtype) * target_scale
        return 0.5 * ((out - target) ** 2).sum(1)
    raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
