"""Training of one run (study × dataset × λ × seed) on tensors held on the device."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .models import build_model


@dataclass
class Features:
    """A dataset as float tensors on one device, ready for batching by index."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def to_features(tensors: dict[str, torch.Tensor], device: torch.device) -> Features:
    """Float features: images (uint8) scaled to [0, 1], then standardised by the training set's
    mean and std, and given a channel axis; real-valued data (synthetic clusters) unchanged.
    """
    train_x, test_x = tensors["train_x"], tensors["test_x"]
    if train_x.dtype == torch.uint8:
        train_x, test_x = train_x.float() / 255, test_x.float() / 255
        mean, std = train_x.mean(), train_x.std()
        train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
        if train_x.ndim == 3:
            train_x, test_x = train_x.unsqueeze(1), test_x.unsqueeze(1)
    classes = int(max(tensors["train_y"].max(), tensors["test_y"].max())) + 1
    return Features(
        train_x.float().to(device),
        tensors["train_y"].long().to(device),
        test_x.float().to(device),
        tensors["test_y"].long().to(device),
        classes,
    )


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def learning_rate(opt: dict, step: int, total_steps: int, epoch: int) -> float:
    """Learning rate at a step: constant, cosine decay to 0 over the run, or step decay by
    ``gamma`` at each epoch in ``milestones``.
    """
    base = opt["lr"]
    if opt["schedule"] == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    if opt["schedule"] == "step":
        return base * opt["gamma"] ** sum(epoch >= m for m in opt["milestones"])
    return base


@dataclass
class RunResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    status: str = "finished"
    reason: str = ""


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """Seed the initialisation and return the generator that orders the batches."""
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    return torch.Generator(device=device).manual_seed(seed)


def train_run(
    spec: dict, data: Features, device: torch.device, log: Callable[[str], None] = print
) -> RunResult:
    """Train the study's model with SGD + momentum and ``weight_decay = λ`` on a mean-reduced
    cross-entropy, which makes λ the coefficient of (λ/2) Σ_l ||W_l||_F² in the objective.
    A non-finite loss stops the run and marks it diverged.
    """
    opt_cfg = spec["optimizer"]
    gen = seed_everything(spec["seed"], device)
    model = build_model(spec["model"], data.in_shape, data.classes).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=opt_cfg["lr"],
        momentum=opt_cfg["momentum"],
        weight_decay=spec["weight_decay"],
        foreach=True,
    )
    loss_fn = nn.CrossEntropyLoss()
    n, batch = data.train_x.shape[0], opt_cfg["batch_size"]
    steps_per_epoch = math.ceil(n / batch)
    total_steps = opt_cfg["epochs"] * steps_per_epoch
    result = RunResult(model)
    step = 0
    for epoch in range(opt_cfg["epochs"]):
        start = time.perf_counter()
        model.train()
        # Sums stay on the device: one host synchronisation per epoch, not per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        order = torch.randperm(n, generator=gen, device=device)
        for idx in order.split(batch):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(opt_cfg, step, total_steps, epoch)
            x, y = data.train_x[idx], data.train_y[idx]
            out = model(x)
            loss = loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * y.shape[0]
            correct += (out.argmax(1) == y).sum()
            step += 1
        train_loss = float(loss_sum) / n
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "train_acc": float(correct) / n,
            "seconds": time.perf_counter() - start,
        }
        result.history.append(row)
        log(
            f"epoch {row['epoch']}/{opt_cfg['epochs']} loss {train_loss:.4f} "
            f"acc {row['train_acc']:.4f} lr {row['lr']:.2e} {row['seconds']:.2f}s"
        )
        if not math.isfinite(train_loss):
            result.status, result.reason = "diverged", f"non-finite loss at epoch {epoch + 1}"
            log(f"run diverged: {result.reason}")
            break
    return result
