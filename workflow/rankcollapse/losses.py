"""Per-sample training losses; the objective is their mean plus (λ/2) Σ_l ||W_l||_F²."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


def per_sample_loss(out: torch.Tensor, y: torch.Tensor, loss: str, target_scale: float):
    """loss_i for each sample: cross_entropy −log softmax(f(x_i))_{y_i}, or mse
    ½ ||f(x_i) − s e_{y_i}||² with one-hot targets scaled by s = ``target_scale``.

    MSE is summed over outputs (not averaged as torch's MSELoss does), so that the mean over
    samples is the loss of docs/science.md and λ keeps its meaning.
    """
    if loss == "cross_entropy":
        return functional.cross_entropy(out, y, reduction="none")
    if loss == "mse":
        # One-hot by comparison, not functional.one_hot: it reads y on the host (no vmap).
        classes = torch.arange(out.shape[-1], device=out.device)
        target = (y.unsqueeze(-1) == classes).to(out.dtype) * target_scale
        return 0.5 * ((out - target) ** 2).sum(1)
    raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")


def loss_spec(spec: dict) -> dict:
    """The keyword arguments of :func:`per_sample_loss` a run's spec sets."""
    return {"loss": spec["loss"], "target_scale": spec["target_scale"]}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, loss: dict):
    """Mean loss and accuracy of ``model`` on (x, y), in batches of ``batch``."""
    total, correct = torch.zeros((), dtype=torch.float64, device=x.device), 0
    for xb, yb in zip(x.split(batch), y.split(batch), strict=True):
        out = model(xb)
        total += per_sample_loss(out, yb, **loss).sum().double()
        correct += int((out.argmax(1) == yb).sum())
    return float(total) / len(y), correct / len(y)
