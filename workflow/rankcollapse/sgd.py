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


def decay_exponent(opt: dict, wd: float, steps_per_epoch: int, epochs: int) -> float:
    """λ Σ_t η_t / (1 − β) over ``epochs`` epochs of the schedule: weight decay alone (no data
    gradient) multiplies every weight by about exp(−this) over the run, since with momentum β
    each step's decay −η_t λ W acts 1/(1 − β) times over.
    """
    total = epochs * steps_per_epoch
    schedule = {**opt, "epochs": epochs}
    lr_sum = sum(
        learning_rate(schedule, step, total, step // steps_per_epoch) for step in range(total)
    )
    return wd * lr_sum / (1 - opt["momentum"])


def epochs_for(opt: dict, wd: float, steps_per_epoch: int) -> int:
    """The epochs a run trains for: ``epochs``, or with ``decay_horizon`` h the fewest epochs
    from ``epochs`` to ``max_epochs`` whose :func:`decay_exponent` reaches h (``max_epochs``
    when none does; ``epochs`` at λ = 0, which forgets nothing).
    """
    low, high = opt["epochs"], max(opt["epochs"], opt["max_epochs"])
    horizon = opt["decay_horizon"]
    if horizon is None or wd == 0:
        return low
    if decay_exponent(opt, wd, steps_per_epoch, high) < horizon:
        return high
    while low < high:  # the exponent grows with the epochs for every schedule
        middle = (low + high) // 2
        if decay_exponent(opt, wd, steps_per_epoch, middle) >= horizon:
            high = middle
        else:
            low = middle + 1
    return low


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
