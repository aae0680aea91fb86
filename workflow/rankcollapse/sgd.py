"""SGD with momentum and weight decay, one epoch at a time: for one network (pre-training and
fine-tuning) and for a stack of runs trained as one (:class:`StackedSGD`, :func:`stacked_epoch`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from .device import seed_everything
from .features import Features
from .losses import per_sample_loss
from .stack import Stack


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


def supervised(model: nn.Module, loss: dict):
    """The batch objective of :func:`sgd_epoch` for labelled training: the mean per-sample
    loss of ``model`` on the batch, and the number it classifies correctly.
    """

    def objective(x: torch.Tensor, y: torch.Tensor):
        out = model(x)
        return per_sample_loss(out, y, **loss).mean(), (out.argmax(1) == y).sum()

    return objective


def sgd_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: Features,
    objective: Callable,
    schedule: dict,
    epoch: int,
    batch_order: torch.Generator,
) -> tuple[float, float]:
    """SGD epoch ``epoch`` (counted from 0) of ``schedule["epochs"]``: steps of
    ``schedule["batch_size"]`` samples over a random order of the training set drawn from
    ``batch_order``, each at the learning rate of :func:`learning_rate` for its step, on
    ``objective(x, y)`` → (batch mean loss, correct count or None). Returns the epoch's mean
    batch loss and accuracy (NaN without counts), read on the host once.
    """
    model.train()
    n, device = len(data.train_y), data.train_x.device
    batch = schedule["batch_size"]
    steps = math.ceil(n / batch)
    total_steps = schedule["epochs"] * steps
    # Sums stay on the device: one host synchronisation per epoch, not per step.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    counted = False
    order = torch.randperm(n, generator=batch_order, device=device)
    for i, idx in enumerate(order.split(batch)):
        for group in opt.param_groups:
            group["lr"] = learning_rate(schedule, epoch * steps + i, total_steps, epoch)
        batch_loss, batch_correct = objective(data.train_x[idx], data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        batch_loss.backward()
        opt.step()
        loss_sum += batch_loss.detach() * len(idx)
        if batch_correct is not None:
            correct += batch_correct
            counted = True
    return float(loss_sum) / n, float(correct) / n if counted else math.nan


def finetune(
    model: nn.Module,
    data: Features,
    epochs: int,
    lr: float,
    momentum: float,
    batch_size: int,
    weight_decay: float,
    loss: dict,
    seed: int,
) -> list[dict]:
    """End-to-end SGD fine-tuning (momentum, ``weight_decay`` = the run's λ, learning rate
    decayed from ``lr`` to 0 by a cosine over the epochs, batch order from seed ``seed``) on
    the mean per-sample loss; one record per epoch. A non-finite loss stops it.
    """
    if epochs == 0:
        return []
    batch_order = seed_everything(seed, data.train_x.device)
    opt = optimizer(model, lr, momentum, weight_decay)
    schedule = {"lr": lr, "schedule": "cosine", "epochs": epochs, "batch_size": batch_size}
    history = []
    for epoch in range(epochs):
        start = time.perf_counter()
        train_loss, train_acc = sgd_epoch(
            model, opt, data, supervised(model, loss), schedule, epoch, batch_order
        )
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc}
        history.append({**record, "seconds": seconds})
        if not math.isfinite(train_loss):
            break
    model.eval()
    return history


def per_run(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An M-vector shaped to multiply a stacked M × … tensor run by run."""
    return values.view(-1, *[1] * (like.dim() - 1))


class StackedSGD:
    """SGD with momentum and weight decay for every run of a stack, each run with its own
    learning rate η, momentum μ and weight decay λ (M-vectors): per run exactly the update of
    ``torch.optim.SGD`` (dampening 0, no Nesterov), bitwise,

        g ← ∇L + λ θ;   b ← μ b + g (b ← g at the first step);   θ ← θ − η b.

    A run's momentum buffer starts at zero, where μ·0 + g is g exactly.
    """

    def __init__(self, stack: Stack, momentum: list[float], weight_decay: list[float], saved):
        params, device = stack.params, stack.device
        dtype = next(iter(params.values())).dtype
        self.names, self.hyper = stack.names, list(zip(momentum, weight_decay, strict=True))
        self.weight_decay = torch.tensor(weight_decay, dtype=dtype, device=device)
        # Per-run factors laid out as the parameters (elementwise kernels over contiguous
        # operands run several times faster than over broadcast ones); one number where all
        # runs share it. Either way each element gets the same arithmetic.
        self.decay = {n: self._per_element(weight_decay, p) for n, p in params.items()}
        self.momentum = {n: self._per_element(momentum, p) for n, p in params.items()}
        self.buffers = {name: torch.zeros_like(p) for name, p in params.items()}
        for i, state in enumerate(saved):  # each run's buffers as torch's SGD saved them
            for j, name in enumerate(self.names):
                if state is not None and j in state.get("state", {}):
                    self.buffers[name][i] = state["state"][j]["momentum_buffer"]
        self.params = params

    @staticmethod
    def _per_element(values: list[float], like: torch.Tensor) -> float | torch.Tensor:
        if len(set(values)) == 1:
            return values[0]
        column = torch.tensor(values, dtype=like.dtype, device=like.device)
        return per_run(column, like).expand_as(like).contiguous()

    def step(self, grads: dict[str, torch.Tensor], lr: torch.Tensor, shared_lr: float | None):
        """One step with learning rates ``lr`` (M), or ``shared_lr`` where all runs take it."""
        with torch.no_grad():
            for name in self.names:
                p, b, decay = self.params[name], self.buffers[name], self.decay[name]
                if isinstance(decay, torch.Tensor):
                    g = grads[name].addcmul(decay, p)
                else:
                    g = grads[name].add(p, alpha=decay)
                b.mul_(self.momentum[name]).add_(g)
                if shared_lr is None:
                    p.addcmul_(b, per_run(-lr, p))
                else:
                    p.add_(b, alpha=-shared_lr)

    def state_dict(self, i: int, lr: float) -> dict:
        """Run i's optimiser state in the form of ``torch.optim.SGD.state_dict``, which its
        checkpoint keeps.
        """
        group = {
            "lr": lr,
            "momentum": self.hyper[i][0],
            "weight_decay": self.hyper[i][1],
            "dampening": 0,
            "nesterov": False,
            "params": list(range(len(self.names))),
        }
        state = {j: {"momentum_buffer": self.buffers[n][i]} for j, n in enumerate(self.names)}
        return {"state": state, "param_groups": [group]}


def stacked_epoch(
    stack: Stack,
    optimizer: StackedSGD,
    data: Features,
    loss: dict,
    lr: torch.Tensor,
    shared_lr: list[float | None],
    batch_size: int,
    batch_orders: list[torch.Generator],
) -> tuple[list[float], list[float]]:
    """One SGD epoch of every run of ``stack``: each run steps through its own random order
    of the training set (drawn from its generator) in batches of ``batch_size``, step s at
    learning rate ``lr[s]`` (steps × M; ``shared_lr[s]`` where every run takes the same one).
    Returns each run's mean batch loss and accuracy, read on the host once.
    """
    n, device = len(data.train_y), data.train_x.device
    m = len(stack)
    orders = torch.stack([torch.randperm(n, generator=g, device=device) for g in batch_orders])
    loss_sum = torch.zeros(m, device=device)
    correct = torch.zeros(m, device=device, dtype=torch.long)
    with stack.computing():
        for s, idx in enumerate(orders.split(batch_size, dim=1)):
            x, y = data.train_x[idx], data.train_y[idx]
            grads, value, batch_correct = stack.gradients(x, y, loss)
            optimizer.step(grads, lr[s], shared_lr[s])
            loss_sum += value.detach() * idx.shape[1]
            correct += batch_correct
    return (loss_sum / n).tolist(), (correct / n).tolist()
