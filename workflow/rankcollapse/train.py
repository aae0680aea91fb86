"""Rule ``train``: one run (study × dataset × λ × seed) trained on tensors held on the device.

SGD with momentum and weight decay λ on the mean per-sample loss (:mod:`rankcollapse.sgd`)
chooses the stationary point; then the convergence phase (:mod:`rankcollapse.convergence`),
L-BFGS on the full-batch objective from the SGD end point, converges to it until the run is
certified stationary or its budget is spent. After each epoch and every ``record_every``
L-BFGS iterations the history records the full-batch loss and the residuals. A non-finite
loss stops the run and marks it diverged. A checkpoint after each record lets a killed job
resume and end bitwise where an uninterrupted run ends (on the CPU).

A study with ``objective: simclr`` (paper B's U6) trains instead by self-supervised
pre-training (:mod:`rankcollapse.contrastive`) on the training images, then fits a linear probe
(:mod:`rankcollapse.probe`): the run's weights are the pre-trained network with the probe as
its head, so every later rule reads it like any run. A fine-tuned copy gives the accuracy
after supervised fine-tuning.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, contrastive, convergence, files, probe, sgd
from .convergence import Certificate, Residuals
from .device import keep_freed_memory, resolve_device, seed_everything
from .features import Features
from .losses import evaluate, loss_spec
from .models import head, initial_model

SUPERVISED = "supervised"
PRETRAINED = "self-supervised pre-training and a linear probe: no convergence phase"


@dataclass
class RunResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    status: str = "finished"
    reason: str = ""
    resumed_from: str = ""
    epochs: int = 0
    decay_exponent: float = 0.0
    certificate: Certificate | None = None
    finetune_test_acc: float = math.nan


@dataclass
class Checkpointing:
    """Where a run's checkpoint lives and how often it is written: after every ``every``-th
    history record (an SGD or pre-training epoch, a record of the convergence phase, the
    probe); 0 writes none.
    """

    path: Path
    every: int


class Recorder:
    """A run's history: one record per SGD epoch or per ``record_every`` L-BFGS iterations
    (or per pre-training epoch, and the probe), each with the full-batch loss and residuals at
    that point (a pre-training epoch: its own loss), a divergence check and, every
    ``checkpointing.every`` records, a checkpoint.
    """

    def __init__(self, spec, model, data, result, progress, checkpointing, generator, log):
        self.spec, self.model, self.result, self.progress = spec, model, result, progress
        self.x, self.y = data.train_x, data.train_y
        self.checkpointing, self.generator, self.log = checkpointing, generator, log
        self.loss, self.wd = loss_spec(spec), spec["weight_decay"]
        self.last: Residuals | None = None
        # What a checkpoint holds: the model, or in pre-training the model and its projector.
        self.checkpointed: nn.Module = model

    def residuals(self) -> Residuals:
        """Where the run stands now, in the precision of its weights."""
        self.last = convergence.residuals(
            self.model,
            *convergence.objective(self.model, self.x, self.y, self.loss, self.wd),
            self.wd,
        )
        return self.last

    def row(self, phase: str, epoch: int, lr: float, seconds: float, extra: dict, now) -> dict:
        """A history record; ``now`` the residuals at that point, or None where the run's
        objective F was not what was trained (pre-training, a fine-tuned copy): NaN then.
        """
        nan = math.nan
        return {
            "phase": phase,
            "epoch": epoch,
            "lr": lr,
            "train_loss": nan,
            "train_acc": nan,
            **extra,
            "full_loss": now.full_loss if now else nan,
            "full_objective": now.objective if now else nan,
            "residual": now.residual if now else nan,
            "rel_residual": now.rel_residual if now else nan,
            "rel_residual_max": now.worst if now else nan,
            "seconds": seconds,
        }

    def record(
        self,
        phase: str,
        epoch: int,
        lr: float,
        seconds: float,
        extra: dict,
        optimizer,
        residuals: bool = True,
    ) -> bool:
        """Append a record, with the full-batch loss and residuals unless ``residuals`` is
        False (a pre-training epoch, whose loss is not F: its own ``train_loss`` is checked);
        False (the run marked diverged) when the loss is not finite.
        """
        now = self.residuals() if residuals else None
        self.result.history.append(self.row(phase, epoch, lr, seconds, extra, now))
        if now is not None:
            loss = now.full_loss
            self.log(
                f"{phase} {epoch}: loss {loss:.5f} residual {now.residual:.3e} "
                f"(rel {now.rel_residual:.3e}, worst layer {now.worst:.3e}) lr {lr:.2e} "
                f"{seconds:.2f}s"
            )
        else:
            loss = extra["train_loss"]
            self.log(f"{phase} {epoch}: loss {loss:.5f} lr {lr:.2e} {seconds:.2f}s")
        if not (math.isfinite(loss) and (now is None or math.isfinite(now.residual))):
            self.result.status = "diverged"
            self.result.reason = f"non-finite loss in {phase} {epoch}"
            self.log(f"run diverged: {self.result.reason}")
            return False
        self.progress[phase] = epoch
        every = self.checkpointing.every if self.checkpointing is not None else 0
        if every > 0 and len(self.result.history) % every == 0:
            checkpoint.save(
                self.checkpointing.path,
                self.spec["config_hash"],
                self.progress,
                self.result.history,
                self.checkpointed,
                optimizer,
                self.generator,
            )
        return True


def sgd_phase(recorder: Recorder, data: Features, opt_cfg: dict, saved) -> bool:
    """SGD epochs from where the run stands to ``opt_cfg["epochs"]``; False if it diverged."""
    model, generator = recorder.model, recorder.generator
    optimizer = sgd.optimizer(model, opt_cfg["lr"], opt_cfg["momentum"], recorder.wd)
    if saved is not None and recorder.progress["convergence"] == 0:
        saved.load_optimizer(optimizer)
    objective = sgd.supervised(model, recorder.loss)
    for epoch in range(recorder.progress["sgd"], opt_cfg["epochs"]):
        start = time.perf_counter()
        # Reads on the host before the clock stops, so queued GPU work counts in the time.
        train_loss, train_acc = sgd.sgd_epoch(
            model, optimizer, data, objective, opt_cfg, epoch, generator
        )
        seconds = time.perf_counter() - start
        running = {"train_loss": train_loss, "train_acc": train_acc}
        lr = optimizer.param_groups[0]["lr"]
        if not recorder.record("sgd", epoch + 1, lr, seconds, running, optimizer):
            return False
    return True


def convergence_phase(recorder: Recorder, phase: dict, tol: float, saved) -> Certificate:
    """L-BFGS on the full-batch objective, in the phase's precision, from where the run stands
    until it is certified at ``tol`` or a budget is spent; the run's certificate.
    """
    model, wd = recorder.model, recorder.wd
    reason = convergence.NO_DECAY if wd == 0 else "" if phase["steps"] else convergence.NO_PHASE
    if not reason:
        dtype = getattr(torch, phase["dtype"])
        model.to(dtype)
        recorder.x = recorder.x.to(dtype)
    if not reason or recorder.last is None:
        recorder.residuals()  # in this precision, also after a resume, so both paths agree
    lbfgs = convergence.lbfgs(model, phase["history_size"])
    if saved is not None and recorder.progress["convergence"] > 0:
        saved.load_optimizer(lbfgs)

    def closure() -> float:
        _, value = convergence.objective(model, recorder.x, recorder.y, recorder.loss, wd)
        return float(value)

    started = time.perf_counter()
    while not reason:
        done, _ = convergence.lbfgs_counts(lbfgs)
        budget = phase["max_seconds"]
        if recorder.last.worst <= tol:
            reason = convergence.TOLERANCE_REACHED
        elif done >= phase["steps"]:
            reason = convergence.STEPS_SPENT
        elif budget is not None and time.perf_counter() - started > budget:
            reason = convergence.TIME_SPENT
        if reason:
            break
        before = recorder.last.objective
        convergence.set_iterations(lbfgs, min(phase["record_every"], phase["steps"] - done))
        start = time.perf_counter()
        lbfgs.step(closure)
        iterations, evaluations = convergence.lbfgs_counts(lbfgs)
        if iterations == done:  # a zero gradient or a line search that could not start
            reason = convergence.NO_PROGRESS
            break
        seconds, step = time.perf_counter() - start, convergence.last_step(lbfgs)
        extra = {"evaluations": evaluations}
        if not recorder.record("convergence", iterations, step, seconds, extra, lbfgs):
            return convergence.certify(None, wd, tol, iterations, evaluations, "")
        if not recorder.last.objective < before:
            reason = convergence.NO_PROGRESS
    iterations, evaluations = convergence.lbfgs_counts(lbfgs)
    return convergence.certify(recorder.last, wd, tol, iterations, evaluations, reason)


def pretraining_phase(recorder: Recorder, data: Features, opt_cfg: dict, saved) -> bool:
    """Self-supervised pre-training (:mod:`rankcollapse.contrastive`): SGD epochs of SimCLR on
    the training images, labels unused, from where the run stands to ``opt_cfg["epochs"]``;
    False if it diverged.
    """
    net, generator, settings = (
        recorder.checkpointed,
        recorder.generator,
        recorder.spec["pretraining"],
    )
    optimizer = sgd.optimizer(net, opt_cfg["lr"], opt_cfg["momentum"], recorder.wd)
    if saved is not None and recorder.progress["probe"] == 0:
        saved.load_optimizer(optimizer)
    # Views are drawn from the batch-order generator, so a checkpoint holds their state too.
    objective = contrastive.simclr_objective(net, settings, generator)
    for epoch in range(recorder.progress["pretraining"], opt_cfg["epochs"]):
        start = time.perf_counter()
        train_loss, _ = sgd.sgd_epoch(net, optimizer, data, objective, opt_cfg, epoch, generator)
        seconds = time.perf_counter() - start
        lr = optimizer.param_groups[0]["lr"]
        extra = {"train_loss": train_loss}
        if not recorder.record("pretraining", epoch + 1, lr, seconds, extra, optimizer, False):
            return False
    return True


def probe_phase(recorder: Recorder, data: Features, batch: int) -> bool:
    """The linear probe (:mod:`rankcollapse.probe`): the model's head fitted on its frozen
    representation of the training set, by the run's loss and λ; False if it diverged.
    """
    if recorder.progress["probe"]:
        recorder.residuals()  # resumed after it: where it left the run, as the certificate reads
        return True
    start = time.perf_counter()
    features = probe.frozen_features(recorder.model, data.train_x, batch)
    steps = recorder.spec["pretraining"]["probe_steps"]
    iterations, loss, accuracy = probe.fit_head(
        head(recorder.model), features, data.train_y, recorder.loss, recorder.wd, steps
    )
    seconds = time.perf_counter() - start
    extra = {"train_loss": loss, "train_acc": accuracy, "iterations": iterations}
    # Recorded as the phase's one step, so that progress marks it done whatever L-BFGS made.
    return recorder.record("probe", 1, math.nan, seconds, extra, None)


def finetune_phase(recorder: Recorder, data: Features, opt_cfg: dict, batch: int) -> float:
    """Supervised fine-tuning of a copy of the probed network, end to end (:func:`.sgd.finetune`,
    batch order from the run's seed, so a resumed run repeats it exactly); its epochs join the
    history, and its test accuracy is returned. The run's weights stay the probed ones.
    """
    settings, spec = recorder.spec["pretraining"], recorder.spec
    tuned = copy.deepcopy(recorder.model)
    epochs = sgd.finetune(
        tuned,
        data,
        settings["finetune_epochs"],
        settings["finetune_lr"],
        opt_cfg["momentum"],
        opt_cfg["batch_size"],
        recorder.wd,
        recorder.loss,
        spec["seed"],
    )
    for row in epochs:
        extra = {"train_loss": row["train_loss"], "train_acc": row["train_acc"]}
        record = recorder.row("finetune", row["epoch"], math.nan, row["seconds"], extra, None)
        recorder.result.history.append(record)
    if not epochs or not math.isfinite(epochs[-1]["train_loss"]):
        return math.nan
    _, accuracy = evaluate(tuned, data.test_x, data.test_y, batch, recorder.loss)
    recorder.log(f"fine-tuned for {len(epochs)} epoch(s): test accuracy {accuracy:.4f}")
    return accuracy


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
    wd, tol = spec["weight_decay"], spec["stationarity"]["tol"]
    steps_per_epoch = math.ceil(len(data.train_y) / spec["optimizer"]["batch_size"])
    opt_cfg = {
        **spec["optimizer"],
        "epochs": sgd.epochs_for(spec["optimizer"], wd, steps_per_epoch),
    }
    generator = seed_everything(spec["seed"], device)
    keep_freed_memory()
    model = initial_model(spec["model"], data.in_shape, data.classes, spec["seed"]).to(device)
    pretrained = spec.get("objective", SUPERVISED) != SUPERVISED
    # Built after the model, so that the model starts where a supervised run of its seed does.
    checkpointed = (
        contrastive.Pretraining(model, spec["pretraining"]["projection_dim"]).to(device)
        if pretrained
        else model
    )
    decay = sgd.decay_exponent(spec["optimizer"], wd, steps_per_epoch, opt_cfg["epochs"])
    result = RunResult(model, epochs=opt_cfg["epochs"], decay_exponent=decay)
    progress = dict.fromkeys(("pretraining", "probe") if pretrained else ("sgd", "convergence"), 0)
    saved = None
    if checkpointing is not None:
        saved = checkpoint.load(checkpointing.path, spec["config_hash"], log)
        if saved is not None:
            progress = checkpoint.restore(saved, checkpointed, generator)
            result.history = saved.history
            result.resumed_from = ", ".join(f"{k} {v}" for k, v in progress.items())
            log(f"resumed from {checkpointing.path}: {result.resumed_from}")
    recorder = Recorder(spec, model, data, result, progress, checkpointing, generator, log)
    recorder.checkpointed = checkpointed
    if pretrained:
        batch = spec["optimizer"]["batch_size"]
        if pretraining_phase(recorder, data, opt_cfg, saved) and probe_phase(recorder, data, batch):
            result.finetune_test_acc = finetune_phase(recorder, data, opt_cfg, batch)
            result.certificate = convergence.certify(recorder.last, wd, tol, 0, 0, PRETRAINED)
        else:
            result.certificate = convergence.certify(None, wd, tol, 0, 0, "")
    elif sgd_phase(recorder, data, opt_cfg, saved):
        result.certificate = convergence_phase(recorder, spec["convergence"], tol, saved)
    else:
        result.certificate = convergence.certify(None, wd, tol, 0, 0, "")
    certificate = result.certificate
    log(
        f"certificate: {'stationary' if certificate.stationary else 'not stationary'} "
        f"(worst layer {certificate.rel_residual_max:.3e}, tol {tol:g}; "
        f"{certificate.stop_reason}; {certificate.steps} L-BFGS iterations)"
    )
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
        "epochs_run": sum(row["phase"] in ("sgd", "pretraining") for row in result.history),
        "epochs_planned": result.epochs,
        "decay_exponent": result.decay_exponent,
        "certificate": result.certificate.as_dict(),
        "resumed_from": result.resumed_from,
        "finetune_test_acc": result.finetune_test_acc,
        "train_seconds": sum(row["seconds"] for row in result.history),
        "in_shape": list(features.in_shape),
        "classes": features.classes,
        "history_sha256": history_sha256,
        **files.provenance(target),
    }
    files.write_json(metadata, meta)
    # Everything it could restore is now in the outputs.
    checkpointing.path.unlink(missing_ok=True)
