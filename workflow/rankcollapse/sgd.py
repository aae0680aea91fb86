"""SGD with momentum and weight decay, one epoch at a time: the mechanism training and
fine-tuning share.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .features import Features
from .losses import per_sample_loss


def learning_rate(opt: dict, step: int, total_steps: int, epoch: int) -> float:
    """Learning rate at a step: constant, cosine decay to 0 over ``total_steps``, or step
    decay by ``gamma`` at each epoch in ``milestones``.
    """
    base = opt["lr"]
    if opt["schedule"] == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    if opt["schedule"] == "step":
        return base * opt["gamma"] ** sum(epoch >= m for m in opt["milestones"])
    return base


def optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float):
    """torch's SGD with ``weight_decay = λ`` on the mean per-sample loss, which makes λ the
    coefficient of (λ/2) Σ_l ||W_l||_F² in the objective.
    """
    return torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        fused=True,  # one kernel for the whole update: a CPU step's update is memory-bound
    )


def sgd_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: Features,
    loss: dict,
    schedule: dict,
    epoch: int,
    batch_order: torch.Generator,
) -> tuple[float, float]:
    """SGD epoch ``epoch`` (counted from 0) of ``schedule["epochs"]``: steps of
    ``schedule["batch_size"]`` samples over a random order of the training set drawn from
    ``batch_order``, each at the learning rate of :func:`learning_rate` for its step. Returns
    the epoch's mean batch loss and accuracy, read on the host once.
    """
    model.train()
    n, device = len(data.train_y), data.train_x.device
    batch = schedule["batch_size"]
    steps = math.ceil(n / batch)
    total_steps = schedule["epochs"] * steps
    # Sums stay on the device: one host synchronisation per epoch, not per step.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    order = torch.randperm(n, generator=batch_order, device=device)
    for i, idx in enumerate(order.split(batch)):
        for group in opt.param_groups:
            group["lr"] = learning_rate(schedule, epoch * steps + i, total_steps, epoch)
        x, y = data.train_x[idx], data.train_y[idx]
        out = model(x)
        batch_loss = per_sample_loss(out, y, **loss).mean()
        opt.zero_grad(set_to_none=True)
        batch_loss.backward()
        opt.step()
        loss_sum += batch_loss.detach() * y.shape[0]
        correct += (out.argmax(1) == y).sum()
    return float(loss_sum) / n, float(correct) / n
