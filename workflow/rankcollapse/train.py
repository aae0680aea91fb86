"""Rule ``train``: one run (study × dataset × λ × seed) trained on tensors held on the device.

SGD with momentum and weight decay λ on the mean per-sample loss (:mod:`rankcollapse.sgd`),
then optionally plain full-batch gradient descent on the same objective to approach a
stationary point. After each epoch (and every ``residual_every`` full-batch steps) the history
records the full-batch loss and the stationarity residual ||∇F||. A non-finite loss stops the
run and marks it diverged. A checkpoint after each record lets a killed job resume and end
bitwise where an uninterrupted run ends (on the CPU).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, files, sgd
from .device import keep_freed_memory, resolve_device, seed_everything
from .features import Features
from .losses import loss_spec, per_sample_loss
from .models import build_model


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
    every: int


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


def train_run(
    spec: dict,
    data: Features,
    device: torch.device,
    log: Callable[[str], None] = print,
    checkpointing: Checkpointing | None = None,
) -> RunResult:
    """Train the study's model as the module docstring says; with ``checkpointing``, resume
    from its checkpoint when one of the same config hash exists.
    """
    opt_cfg, wd = spec["optimizer"], spec["weight_decay"]
    loss = loss_spec(spec)
    gen = seed_everything(spec["seed"], device)
    keep_freed_memory()
    model = build_model(spec["model"], data.in_shape, data.classes).to(device)
    optimizer = sgd.optimizer(model, opt_cfg["lr"], opt_cfg["momentum"], wd)
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
        # Reads on the host before the clock stops, so queued GPU work counts in the time.
        train_loss, train_acc = sgd.sgd_epoch(model, optimizer, data, loss, opt_cfg, epoch, gen)
        seconds = time.perf_counter() - start
        running = {"train_loss": train_loss, "train_acc": train_acc}
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


def train(
    spec: dict,
    data: str,
    model: str,
    history: str,
    metadata: str,
    checkpoint_path: str,
    device: str,
    threads: int,
    checkpoint_every: int,
    divergence: str,
    log: Callable[[str], None] = print,
) -> None:
    """Train one run and write its weights, history and metadata (with provenance); the
    checkpoint is removed once they are written.
    """
    torch.set_num_threads(threads)
    target = resolve_device(device)
    features = files.load_features(data, target)
    log(
        f"run {spec['config_hash']}: {spec['study']} {spec['dataset']['name']} "
        f"wd={spec['weight_decay']:g} seed={spec['seed']} on {target}"
    )
    checkpointing = Checkpointing(Path(checkpoint_path), checkpoint_every)
    result = train_run(spec, features, target, log, checkpointing)
    if result.status == "diverged" and divergence == "fail":
        sys.exit(
            f"error: run diverged ({result.reason}); outputs not written. To record diverged "
            "runs and go on with the rest of the sweep, set `training: {divergence: record}`."
        )
    files.save_model(model, result.model, spec["config_hash"])
    history_sha256 = files.write_history(history, result.history)
    meta = {
        "spec": spec,
        "status": result.status,
        "reason": result.reason,
        "epochs_run": sum(row["phase"] == "sgd" for row in result.history),
        "resumed_from": result.resumed_from,
        "train_seconds": sum(row["seconds"] for row in result.history),
        "in_shape": list(features.in_shape),
        "classes": features.classes,
        "history_sha256": history_sha256,
        **files.provenance(target),
    }
    files.write_json(metadata, meta)
    # Everything it could restore is now in the outputs.
    checkpointing.path.unlink(missing_ok=True)
