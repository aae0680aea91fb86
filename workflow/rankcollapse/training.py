"""Training of one run (study × dataset × λ × seed) on tensors held on the device."""

from __future__ import annotations

import ctypes
import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint
from .losses import per_sample_loss
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
    resumed_from: str = ""


@dataclass
class Checkpointing:
    """Where a run's checkpoint lives and how often it is written: after every ``every``-th
    history record (an SGD epoch, or a full-batch residual evaluation); 0 writes none.
    """

    path: Path
    every: int = 1


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """Seed the initialisation and return the generator that orders the batches."""
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    return torch.Generator(device=device).manual_seed(seed)


@functools.cache
def keep_freed_memory() -> None:
    """Have glibc keep freed memory in the heap up to 1 GiB, instead of handing each large
    block back to the OS on free (a step's gradients and activations are freed and allocated
    again every step; every hand-back costs page faults on the next step, a fifth of a CPU
    step's time at width 512). Linux only; elsewhere nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value


def full_batch_gradient(
    model: nn.Module, data: Features, loss: dict, chunk: int = 4096
) -> torch.Tensor:
    """Full-batch mean loss (1/N) Σ_i ℓ_i, a tensor left on the device (no host
    synchronisation), and its gradient left in each parameter's ``.grad``.
    """
    model.zero_grad(set_to_none=True)
    n = data.train_x.shape[0]
    total = torch.zeros((), device=data.train_x.device)
    for x, y in zip(data.train_x.split(chunk), data.train_y.split(chunk), strict=True):
        batch_loss = per_sample_loss(model(x), y, **loss).sum() / n
        batch_loss.backward()
        total += batch_loss.detach()
    return total


def stationarity(
    model: nn.Module, mean_loss: torch.Tensor, wd: float
) -> tuple[float, float, float]:
    """Mean loss, ||∇F|| with F = mean loss + (λ/2) Σ ||θ||², and ||∇F|| / ||λθ||, read on the
    host from the gradient that ``full_batch_gradient`` left in ``.grad``.
    """
    with torch.no_grad():
        params = [p for p in model.parameters() if p.grad is not None]
        grad = torch.sqrt(sum(((p.grad + wd * p) ** 2).sum() for p in params))
        decay = wd * torch.sqrt(sum((p**2).sum() for p in params))
    rel = float(grad / decay) if wd > 0 else float("nan")
    return float(mean_loss), float(grad), rel


def loss_spec(spec: dict) -> dict:
    return {"loss": spec["loss"], "target_scale": spec.get("target_scale", 1.0)}


def train_run(
    spec: dict,
    data: Features,
    device: torch.device,
    log: Callable[[str], None] = print,
    checkpointing: Checkpointing | None = None,
) -> RunResult:
    """Train the study's model with SGD + momentum and ``weight_decay = λ`` on the mean of the
    per-sample losses, which makes λ the coefficient of (λ/2) Σ_l ||W_l||_F² in the objective;
    then, optionally, plain full-batch gradient descent on the same objective to approach a
    stationary point. After each epoch (and every ``residual_every`` full-batch steps) the
    history records the full-batch loss and the stationarity residual ||∇F||.
    A non-finite loss stops the run and marks it diverged.

    With ``checkpointing``, the run resumes from its checkpoint when one of the same config
    hash exists, and ends bitwise where an uninterrupted run ends (on the CPU).
    """
    opt_cfg, wd = spec["optimizer"], spec["weight_decay"]
    loss = loss_spec(spec)
    gen = seed_everything(spec["seed"], device)
    keep_freed_memory()
    model = build_model(spec["model"], data.in_shape, data.classes).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=opt_cfg["lr"],
        momentum=opt_cfg["momentum"],
        weight_decay=wd,
        fused=True,  # one kernel for the whole update: a CPU step's update is memory-bound
    )
    n, batch = data.train_x.shape[0], opt_cfg["batch_size"]
    steps_per_epoch = math.ceil(n / batch)
    total_steps = opt_cfg["epochs"] * steps_per_epoch
    result = RunResult(model)
    progress = {"sgd": 0, "full_batch": 0}
    if checkpointing is not None:
        saved = checkpoint.load(checkpointing.path, spec["config_hash"], log)
        if saved is not None:
            progress = checkpoint.restore(saved, model, optimizer, gen)
            result.history = saved.history
            result.resumed_from = f"sgd {progress['sgd']}, full_batch {progress['full_batch']}"
            log(f"resumed from {checkpointing.path}: {result.resumed_from}")

    def record(phase: str, epoch: int, lr: float, seconds: float, extra: dict) -> bool:
        full_loss, grad, rel = stationarity(model, full_batch_gradient(model, data, loss), wd)
        row = {
            "phase": phase,
            "epoch": epoch,
            "lr": lr,
            **extra,
            "full_loss": full_loss,
            "residual": grad,
            "rel_residual": rel,
            "seconds": seconds,
        }
        result.history.append(row)
        log(
            f"{phase} {epoch}: loss {full_loss:.5f} residual {grad:.3e} (rel {rel:.3e}) "
            f"lr {lr:.2e} {seconds:.2f}s"
        )
        if not (math.isfinite(full_loss) and math.isfinite(grad)):
            result.status, result.reason = "diverged", f"non-finite loss in {phase} {epoch}"
            log(f"run diverged: {result.reason}")
            return False
        progress[phase] = epoch
        if checkpointing is not None and checkpointing.every > 0:
            if len(result.history) % checkpointing.every == 0:
                checkpoint.save(
                    checkpointing.path,
                    spec["config_hash"],
                    progress,
                    result.history,
                    model,
                    optimizer,
                    gen,
                )
        return True

    for epoch in range(progress["sgd"], opt_cfg["epochs"]):
        start = time.perf_counter()
        model.train()
        # Sums stay on the device: one host synchronisation per epoch, not per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        order = torch.randperm(n, generator=gen, device=device)
        for i, idx in enumerate(order.split(batch)):
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(opt_cfg, step, total_steps, epoch)
            x, y = data.train_x[idx], data.train_y[idx]
            out = model(x)
            batch_loss = per_sample_loss(out, y, **loss).mean()
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            loss_sum += batch_loss.detach() * y.shape[0]
            correct += (out.argmax(1) == y).sum()
        # Synchronises before the clock stops, so queued GPU work counts in the epoch's time.
        running = {"train_loss": float(loss_sum) / n, "train_acc": float(correct) / n}
        seconds = time.perf_counter() - start
        if not record("sgd", epoch + 1, optimizer.param_groups[0]["lr"], seconds, running):
            return result

    # Full-batch gradient descent: x ← x − η ∇F(x), the gradient computed over all samples.
    steps, lr = opt_cfg["full_batch_steps"], opt_cfg["full_batch_lr"]
    every = max(1, opt_cfg["residual_every"])
    start = time.perf_counter()
    for k in range(progress["full_batch"] + 1, steps + 1):
        full_batch_gradient(model, data, loss)  # no host synchronisation between records
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * (p.grad + wd * p)
        if k % every == 0 or k == steps:
            if not record("full_batch", k, lr, time.perf_counter() - start, {}):
                return result
            start = time.perf_counter()
    return result
