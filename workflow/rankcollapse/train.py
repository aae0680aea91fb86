"""Rule ``train``: a pack of runs (study × dataset × λ × seed) of one study and dataset,
trained in one process on tensors held on the device.

SGD with momentum and weight decay λ on the mean per-sample loss chooses the stationary point:
the pack's runs take their SGD steps together, as one stack (:mod:`rankcollapse.stack`,
:class:`.sgd.StackedSGD`), each with its own λ, learning rate, momentum, seed and batch order;
a pack of one is the same code. Then each run's convergence phase
(:mod:`rankcollapse.convergence`), L-BFGS on the full-batch objective from its SGD end point,
converges to it until the run is certified stationary or its budget is spent. After each
epoch and every ``record_every`` L-BFGS iterations a run's history records the full-batch
loss and the residuals. A non-finite loss stops that run and marks it diverged; the others go
on. A checkpoint per run after each record lets a killed job resume and end bitwise where an
uninterrupted run ends (on the CPU); a finished run's last checkpoint holds its result, so a
pack killed before its end trains no finished run again.

A study with ``objective: simclr`` (paper B's U6) trains instead by self-supervised
pre-training (:mod:`rankcollapse.contrastive`) on the training images, then fits a linear probe
(:mod:`rankcollapse.probe`): the run's weights are the pre-trained network with the probe as
its head, so every later rule reads it like any run. A fine-tuned copy gives the accuracy
after supervised fine-tuning.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, contrastive, convergence, files, kept, probe, sgd
from .convergence import Certificate, Residuals
from .device import keep_freed_memory, resolve_device, seed_everything
from .features import Features
from .losses import evaluate, loss_spec
from .models import head, initial_model
from .stack import Stack

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
        optimizer_state: dict | None,
        now: Residuals | None,
    ) -> bool:
        """Append a record with the residuals ``now`` (None for a pre-training epoch, whose
        loss is not F: its own ``train_loss`` is checked); False (the run marked diverged)
        when the loss is not finite. ``optimizer_state`` is what the checkpoint keeps.
        """
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
                optimizer_state,
                self.generator,
            )
        return True


class Diverged(Exception):
    """A run diverged in a job told to fail on divergence: its reason, and its log."""

    def __init__(self, reason: str, log: Callable[[str], None]):
        super().__init__(reason)
        self.log = log


@dataclass
class Run:
    """One run of a pack while it trains: its spec, where it stands, and its checkpoint."""

    spec: dict
    recorder: Recorder
    opt_cfg: dict
    saved: checkpoint.Saved | None
    pretrained: bool

    @property
    def result(self) -> RunResult:
        return self.recorder.result

    def in_sgd(self) -> bool:
        progress = self.recorder.progress
        return progress["convergence"] == 0 and progress["sgd"] < self.opt_cfg["epochs"]


def schedule_table(runs: list[Run], steps: int, device: torch.device):
    """The learning rate of every step of each run's next epoch (steps × runs, on the
    device); per step the one all runs take, or None; and each run's last one (its record's).
    """
    columns = []
    for run in runs:
        cfg, epoch = run.opt_cfg, run.recorder.progress["sgd"]
        total = cfg["epochs"] * steps
        columns.append(
            [sgd.learning_rate(cfg, epoch * steps + s, total, epoch) for s in range(steps)]
        )
    rows = list(zip(*columns, strict=True))
    shared = [row[0] if len(set(row)) == 1 else None for row in rows]
    return torch.tensor(rows, device=device), shared, [c[-1] for c in columns]


def sgd_phase(runs: list[Run], data: Features, fail_on_divergence: bool) -> None:
    """SGD epochs of every run still in its SGD phase, from where it stands to its epochs, as
    one stack; a run leaves the stack when its epochs are done or it diverged (with
    ``fail_on_divergence``: :class:`Diverged` is raised instead).
    """
    active = [run for run in runs if run.in_sgd()]
    if not active:
        return
    batch = active[0].opt_cfg["batch_size"]
    steps = math.ceil(len(data.train_y) / batch)
    loss = active[0].recorder.loss
    states = [run.saved.optimizer_state_dict() if run.saved else None for run in active]
    while active:
        stack = Stack([run.recorder.model for run in active])
        optimizer = sgd.StackedSGD(
            stack,
            [run.opt_cfg["momentum"] for run in active],
            [run.recorder.wd for run in active],
            states,
        )
        leaving: list[int] = []
        while not leaving:
            lr, shared_lr, last_lr = schedule_table(active, steps, stack.device)
            start = time.perf_counter()
            generators = [run.recorder.generator for run in active]
            losses, accuracies = sgd.stacked_epoch(
                stack, optimizer, data, loss, lr, shared_lr, batch, generators
            )
            with stack.computing():
                mean_loss, value = stack.objective(
                    data.train_x, data.train_y, loss, optimizer.weight_decay
                )
            # Read on the host before the clock stops, so queued GPU work counts in the time.
            now = [
                convergence.residuals(run.recorder.model, mean_loss[i], value[i], run.recorder.wd)
                for i, run in enumerate(active)
            ]
            seconds = time.perf_counter() - start
            for i, run in enumerate(active):
                recorder = run.recorder
                running = {"train_loss": losses[i], "train_acc": accuracies[i]}
                epoch = recorder.progress["sgd"] + 1
                state = optimizer.state_dict(i, last_lr[i])
                if not recorder.record("sgd", epoch, last_lr[i], seconds, running, state, now[i]):
                    if fail_on_divergence:
                        raise Diverged(recorder.result.reason, recorder.log)
                    leaving.append(i)
                elif not run.in_sgd():
                    leaving.append(i)
                recorder.last = now[i]
        states = [optimizer.state_dict(i, 0.0) for i in range(len(active))]
        for i in leaving:  # its own storage again, out of the stack's
            for p in active[i].recorder.model.parameters():
                p.data = p.data.clone()
        kept = [i for i in range(len(active)) if i not in leaving]
        active, states = [active[i] for i in kept], [states[i] for i in kept]


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
        now, state = recorder.residuals(), lbfgs.state_dict()
        if not recorder.record("convergence", iterations, step, seconds, extra, state, now):
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
        state = optimizer.state_dict()
        if not recorder.record("pretraining", epoch + 1, lr, seconds, extra, state, None):
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
    return recorder.record("probe", 1, math.nan, seconds, extra, None, recorder.residuals())


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


def prepare_run(
    spec: dict,
    data: Features,
    device: torch.device,
    log: Callable[[str], None],
    checkpointing: Checkpointing | None,
) -> Run:
    """A run at its start: its model built from its seed, or where its checkpoint (one of the
    same config hash) left it.
    """
    wd = spec["weight_decay"]
    steps_per_epoch = math.ceil(len(data.train_y) / spec["optimizer"]["batch_size"])
    opt_cfg = {
        **spec["optimizer"],
        "epochs": sgd.epochs_for(spec["optimizer"], wd, steps_per_epoch),
    }
    generator = seed_everything(spec["seed"], device)
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
            if saved.finished is not None:
                result.status, result.reason = saved.finished["status"], saved.finished["reason"]
                result.certificate = Certificate(**saved.finished["certificate"])
                result.finetune_test_acc = saved.finished["finetune_test_acc"]
    recorder = Recorder(spec, model, data, result, progress, checkpointing, generator, log)
    recorder.checkpointed = checkpointed
    return Run(spec, recorder, opt_cfg, saved, pretrained)


def finish(run: Run, data: Features) -> None:
    """After SGD: the run's convergence phase, or its pre-training, probe and fine-tuning;
    then its certificate, and a last checkpoint that holds its result.
    """
    result, recorder, spec = run.result, run.recorder, run.spec
    wd, tol = spec["weight_decay"], spec["stationarity"]["tol"]
    if run.pretrained:
        batch = spec["optimizer"]["batch_size"]
        saved = run.saved
        if pretraining_phase(recorder, data, run.opt_cfg, saved) and probe_phase(
            recorder, data, batch
        ):
            result.finetune_test_acc = finetune_phase(recorder, data, run.opt_cfg, batch)
            result.certificate = convergence.certify(recorder.last, wd, tol, 0, 0, PRETRAINED)
        else:
            result.certificate = convergence.certify(None, wd, tol, 0, 0, "")
    elif result.status != "diverged":
        result.certificate = convergence_phase(recorder, spec["convergence"], tol, run.saved)
    else:
        result.certificate = convergence.certify(None, wd, tol, 0, 0, "")
    certificate = result.certificate
    recorder.log(
        f"certificate: {'stationary' if certificate.stationary else 'not stationary'} "
        f"(worst layer {certificate.rel_residual_max:.3e}, tol {tol:g}; "
        f"{certificate.stop_reason}; {certificate.steps} L-BFGS iterations)"
    )
    checkpointing = recorder.checkpointing
    if checkpointing is not None and checkpointing.every > 0:
        finished = {
            "status": result.status,
            "reason": result.reason,
            "certificate": certificate.as_dict(),
            "finetune_test_acc": result.finetune_test_acc,
        }
        checkpoint.save(
            checkpointing.path,
            spec["config_hash"],
            recorder.progress,
            result.history,
            recorder.checkpointed,
            None,
            recorder.generator,
            finished,
        )


def train_runs(
    specs: list[dict],
    data: Features,
    device: torch.device,
    logs: list[Callable[[str], None]],
    checkpointings: list[Checkpointing | None],
    fail_on_divergence: bool = False,
) -> list[RunResult]:
    """Train a pack of runs of one study and dataset as the module docstring says; with a
    checkpointing, a run resumes from its checkpoint when one of the same config hash exists.
    """
    keep_freed_memory()
    runs = [
        prepare_run(spec, data, device, log, ckpt)
        for spec, log, ckpt in zip(specs, logs, checkpointings, strict=True)
    ]
    pending = [run for run in runs if run.result.certificate is None]
    supervised = [run for run in pending if not run.pretrained]
    shapes = {json.dumps([r.spec["model"], r.spec["optimizer"]["batch_size"]]) for r in supervised}
    if len(shapes) > 1:
        raise ValueError("a pack's runs must share their model and batch size")
    sgd_phase(supervised, data, fail_on_divergence)
    for run in pending:
        finish(run, data)
    return [run.result for run in runs]


def train_run(
    spec: dict,
    data: Features,
    device: torch.device,
    log: Callable[[str], None] = print,
    checkpointing: Checkpointing | None = None,
) -> RunResult:
    """One run trained alone: a pack of one."""
    return train_runs([spec], data, device, [log], [checkpointing])[0]


def run_logger(spec: dict, path: Path, log: Callable[[str], None]) -> Callable[[str], None]:
    """A run's log: its own file, and the pack's log with the run named on each line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    name = f"wd={spec['weight_decay']:g} seed={spec['seed']}"

    def write(line: str) -> None:
        with path.open("a") as out:
            out.write(line + "\n")
        log(f"[{name}] {line}")

    return write


def write_run(files_of: dict, result: RunResult, features: Features, made_with: dict, pack: dict):
    """A run's weights, history and metadata (with provenance and the pack it trained in)."""
    spec = files_of["spec"]
    files.save_model(files_of["model"], result.model, spec["config_hash"])
    history_sha256 = files.write_history(files_of["history"], result.history)
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
        # A packed run's epochs are the pack's: their seconds are the pack's wall time.
        "train_seconds": sum(row["seconds"] for row in result.history),
        "in_shape": list(features.in_shape),
        "classes": features.classes,
        "history_sha256": history_sha256,
        "pack": pack,
        **made_with,
    }
    files.write_json(files_of["metadata"], meta)


def train(
    runs: list[dict],
    data: str,
    device: str,
    threads: int,
    checkpoint_every: int,
    divergence: str,
    log: Callable[[str], None] = print,
) -> None:
    """Train a pack of runs (each: its spec and the paths of its weights, history, metadata,
    checkpoint and log) and write each run's files; a run whose kept files (:mod:`.kept`)
    are still its result is not trained again. The checkpoints are removed once every run's
    files are written.
    """
    torch.set_num_threads(threads)
    target = resolve_device(device)
    made_with = files.provenance(target)
    pack = {"size": len(runs), "runs": [run["spec"]["config_hash"] for run in runs]}
    logs = [run_logger(run["spec"], Path(run["log"]), log) for run in runs]
    fail = divergence == "fail"
    todo = []
    for run, run_log in zip(runs, logs, strict=True):
        spec = run["spec"]
        run_log(
            f"run {spec['config_hash']}: {spec['study']} {spec['dataset']['name']} "
            f"wd={spec['weight_decay']:g} seed={spec['seed']} on {target}, "
            f"in a pack of {len(runs)}"
        )
        if not kept.restore(run, made_with, run_log, diverged_ok=not fail):
            todo.append((run, run_log))
    if not todo:
        return
    features = files.load_features(data, target)
    specs, logs = [run["spec"] for run, _ in todo], [run_log for _, run_log in todo]
    checkpointings = [Checkpointing(Path(run["checkpoint"]), checkpoint_every) for run, _ in todo]
    advice = (
        "outputs not written; the other runs' checkpoints are kept. To record diverged runs "
        "and go on with the rest of the sweep, set `training: {divergence: record}`."
    )
    try:
        results = train_runs(specs, features, target, logs, checkpointings, fail)
        diverged = [
            (r.reason, log) for r, log in zip(results, logs, strict=True) if r.status == "diverged"
        ]
        if diverged and fail:
            raise Diverged(*diverged[0])
    except Diverged as error:
        message = f"error: a run diverged ({error}); {advice}"
        error.log(message)
        sys.exit(message)
    for (run, _), result in zip(todo, results, strict=True):
        write_run(run, result, features, made_with, pack)
        kept.keep(run)
    # Everything they could restore is now in the outputs.
    for checkpointing in checkpointings:
        checkpointing.path.unlink(missing_ok=True)
