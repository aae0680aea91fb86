"""Paper B on one trained run: utilized rank of every measured layer (``utilize``) and
compression to it with fine-tuning, against plain truncated SVD at the same ranks
(``compress``). The formulas are in :mod:`rankcollapse.utilization`.

Which layers: every linear and convolutional layer of an MLP or CNN (a convolution as the
matrix C_out × C_in·k·k on input patches); of a ViT, the qkv, projection and MLP layers of its
blocks (tokens are the calibration samples), not the patch embedding or the head.
Calibration inputs: a fixed random subset of the training set (seed 0, the same for every run
of a dataset). Held-out data: the test set.
"""

from __future__ import annotations

import copy
import json
import math
from contextlib import contextmanager

import torch
from torch import nn

from .extract import evaluate
from .losses import per_sample_loss
from .models import measured_layers
from .training import Features
from .utilization import (
    SecondMoment,
    factorize,
    input_rows,
    output_error_terms,
    parameter_count,
    project_layer,
    relative_error,
    saves_parameters,
    set_weight,
    utilization,
    weight_matrix,
)

CALIBRATION_SEED = 0


def utilized_layers(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(name, module path, module) of the layers paper B measures, named as in the
    rank-collapse tables (layer1…layerL over all linear and convolutional layers); a ViT keeps
    only the layers inside its blocks.
    """
    paths = {id(m): path for path, m in model.named_modules()}
    found = [(name, paths[id(m)], m) for name, m in measured_layers(model)]
    if getattr(model, "block_prefix", None):
        found = [f for f in found if f[1].startswith(model.block_prefix)]
    return found


def layer_kind(path: str, module: nn.Module) -> str:
    """Short kind of a layer for tables and figures: conv, linear, or a ViT block's
    qkv / proj / fc1 / fc2 (the last part of its module path).
    """
    if isinstance(module, nn.Conv2d):
        return "conv"
    last = path.rsplit(".", 1)[-1]
    return last if last in ("qkv", "proj", "fc1", "fc2") else "linear"


def calibration_indices(n: int, samples: int) -> torch.Tensor:
    """A fixed random subset of ``samples`` training indices (all of them if fewer)."""
    g = torch.Generator().manual_seed(CALIBRATION_SEED)
    return torch.randperm(n, generator=g)[: min(samples, n)]


@contextmanager
def input_capture(layers: list[tuple[str, str, nn.Module]]):
    """Forward pre-hooks keeping the latest input of each layer, by name."""
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_pre_hook(
            lambda _m, args, name=name: inputs.__setitem__(name, args[0].detach())
        )
        for name, _, module in layers
    ]
    try:
        yield inputs
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def input_moments(model: nn.Module, x: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    """C_in = Σ x xᵀ (float64, streaming) of every utilized layer's input rows over ``x``."""
    model.eval()
    layers = utilized_layers(model)
    moments: dict[str, SecondMoment] = {}
    with input_capture(layers) as inputs:
        for xb in x.split(batch):
            model(xb)
            for name, _, module in layers:
                rows = input_rows(module, inputs[name])
                if name not in moments:
                    moments[name] = SecondMoment(rows.shape[1], rows.device)
                moments[name].add(rows)
    return {name: m.matrix for name, m in moments.items()}


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model(xb) for xb in x.split(batch)])


def with_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of the model whose utilized layers (by name) have the given weight matrices."""
    projected = copy.deepcopy(model)
    for name, _, module in utilized_layers(projected):
        if name in weights:
            set_weight(module, weights[name])
    return projected


def utilize_run(
    model: nn.Module,
    data: Features,
    energies: list[float],
    calibration_samples: int,
    batch: int,
    loss: dict,
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """One row per utilized layer and energy e: d_in, d_out, k_S, k_T, utilized rank r and
    utilization r / min(d_in, d_out), the plain-SVD rank of W at e and its utilization, the
    layer's relative output error ‖W'X − WX‖_F/‖WX‖_F on the test set (inputs from the original
    network), and, for the whole network with every utilized layer replaced by W', the relative
    error of its logits and its test accuracy. Also returns C_in of every layer.
    """
    model.eval()
    index = calibration_indices(len(data.train_y), calibration_samples)
    moments = input_moments(model, data.train_x[index], batch)
    layers = utilized_layers(model)
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y, batch, loss)
    projections = {
        (name, e): project_layer(weight_matrix(module), moments[name], e)
        for name, _, module in layers
        for e in energies
    }
    # Per-layer output error on the test set, inputs from the original network.
    sums = {key: [0.0, 0.0] for key in projections}
    with torch.no_grad(), input_capture(layers) as inputs:
        for xb in data.test_x.split(batch):
            model(xb)
            for name, _, module in layers:
                rows = input_rows(module, inputs[name])
                w = weight_matrix(module)
                for e in energies:
                    diff, ref = output_error_terms(w, projections[name, e]["projected"], rows)
                    sums[name, e][0] += diff
                    sums[name, e][1] += ref
    reference = logits(model, data.test_x, batch)
    network = {}
    for e in energies:
        projected = with_weights(model, {n: projections[n, e]["projected"] for n, _, _ in layers})
        out = logits(projected, data.test_x, batch)
        network[e] = {
            "network_rel_error": float((out - reference).norm() / reference.norm()),
            "network_test_acc": float((out.argmax(1) == data.test_y).float().mean()),
        }
    rows = []
    for e in energies:
        for position, (name, path, module) in enumerate(layers, start=1):
            p = projections[name, e]
            d_out, d_in = weight_matrix(module).shape
            rows.append(
                {
                    "layer": name,
                    "layer_index": int(name.removeprefix("layer")),
                    "position": position,
                    "module": path,
                    "kind": layer_kind(path, module),
                    "d_in": d_in,
                    "d_out": d_out,
                    "energy": e,
                    "k_S": p["k_S"],
                    "k_T": p["k_T"],
                    "rank": p["rank"],
                    "utilization": utilization(p["rank"], d_in, d_out),
                    "svd_rank": p["svd_rank"],
                    "svd_utilization": utilization(p["svd_rank"], d_in, d_out),
                    "k_S_fraction": p["k_S"] / d_in,
                    "k_T_fraction": p["k_T"] / d_out,
                    "rel_output_error": relative_error(*sums[name, e]),
                    **network[e],
                    "test_acc": test_acc,
                    "test_loss": test_loss,
                    "calibration_samples": len(index),
                }
            )
    return rows, {name: m.cpu() for name, m in moments.items()}


# ---------------------------------------------------------------- compression


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` where the sub-module at ``path`` (e.g. ``blocks.0.attn.qkv``) is."""
    parent_path, _, attribute = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attribute, new)


def compressed(model: nn.Module, matrices: dict[str, torch.Tensor], ranks: dict[str, int]):
    """A copy of the model in which each utilized layer with r (d_in + d_out) < d_in d_out is
    two layers of inner width r, the best rank-r approximation of ``matrices[name]``; the
    other layers keep their weights. Returns the model and the names of the factorized layers.
    """
    model = copy.deepcopy(model)
    done = []
    for name, path, module in utilized_layers(model):
        d_out, d_in = weight_matrix(module).shape
        r = ranks[name]
        if r > 0 and saves_parameters(r, d_in, d_out):
            replace_module(model, path, factorize(module, matrices[name], r))
            done.append(name)
    return model, done


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
    decayed from ``lr`` to 0 by a cosine over the epochs) on the mean per-sample loss; one record
    per epoch. A non-finite loss stops it.
    """
    if epochs == 0:
        return []
    g = torch.Generator(device=data.train_x.device).manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, fused=True
    )
    n = len(data.train_y)
    total, step, history = epochs * math.ceil(n / batch_size), 0, []
    for epoch in range(1, epochs + 1):
        model.train()
        running = torch.zeros((), dtype=torch.float64, device=data.train_x.device)
        for idx in torch.randperm(n, generator=g, device=data.train_x.device).split(batch_size):
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            batch_loss = per_sample_loss(model(data.train_x[idx]), data.train_y[idx], **loss)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.mean().backward()
            optimizer.step()
            running += batch_loss.detach().sum().double()
            step += 1
        history.append({"epoch": epoch, "train_loss": float(running) / n})
        if not math.isfinite(history[-1]["train_loss"]):
            break
    model.eval()
    return history


def test_halves(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random split of the test set (seed 0) into a validation half, on which the
    energy search selects, and an evaluation half, on which the search's result is reported.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(CALIBRATION_SEED))
    return order[: n // 2], order[n // 2 :]


def search_energies(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    moments: dict[str, torch.Tensor],
    energies: list[float],
    tolerance: float,
    batch: int,
    loss: dict,
) -> dict[str, float]:
    """Per layer, in order, the lowest energy e whose projection keeps the validation accuracy
    of the network (earlier layers projected at their chosen energies, later ones not) within
    ``tolerance`` of the original's; 1.0 (the exact support of the inputs) when none does.
    """
    layers = utilized_layers(model)
    _, reference = evaluate(model, x, y, batch, loss)
    chosen: dict[str, torch.Tensor] = {}
    choice: dict[str, float] = {}
    for name, _, module in layers:
        choice[name] = 1.0
        for e in sorted(energies):
            projected = project_layer(weight_matrix(module), moments[name], e)["projected"]
            _, acc = evaluate(with_weights(model, {**chosen, name: projected}), x, y, batch, loss)
            if reference - acc <= tolerance:
                choice[name] = e
                break
        chosen[name] = project_layer(weight_matrix(module), moments[name], choice[name])[
            "projected"
        ]
    return choice


def compress_run(
    model: nn.Module,
    data: Features,
    moments: dict[str, torch.Tensor],
    energy: float | dict[str, float],
    finetune_args: dict,
    batch: int,
    loss: dict,
    log=print,
) -> list[dict]:
    """At energy e (or at a per-layer energy, from search_energies): the utilized rank r of
    every layer (from C_in), then two compressed models at the same per-layer ranks,
    data-driven (factors of W' = P_T W P_S) and plain SVD (factors of the rank-r truncation of
    W), each evaluated on the test set before and after the same end-to-end fine-tuning. One row
    per method and stage.
    """
    model.eval()
    layers = utilized_layers(model)
    original_params = parameter_count(model)
    layer_params = sum(weight_matrix(m).numel() for _, _, m in layers)
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y, batch, loss)
    per_layer = energy if isinstance(energy, dict) else {name: energy for name, _, _ in layers}
    projections = {
        name: project_layer(
            weight_matrix(module), moments[name].to(module.weight.device), per_layer[name]
        )
        for name, _, module in layers
    }
    ranks = {name: p["rank"] for name, p in projections.items()}
    sources = {
        "data_driven": {name: p["projected"] for name, p in projections.items()},
        "svd": {name: weight_matrix(module) for name, _, module in layers},
    }
    rows = []
    for method, matrices in sources.items():
        small, factorized = compressed(model, matrices, ranks)
        params = parameter_count(small)
        kept_layer_params = sum(
            ranks[n] * sum(weight_matrix(m).shape) if n in factorized else weight_matrix(m).numel()
            for n, _, m in layers
        )
        common = {
            "energy": math.nan if isinstance(energy, dict) else energy,
            "selection": "search" if isinstance(energy, dict) else "fixed",
            "layer_energies": json.dumps(per_layer),
            "method": method,
            "params": params,
            "original_params": original_params,
            "param_fraction": params / original_params,
            "layer_param_fraction": kept_layer_params / layer_params,
            "layers_factorized": len(factorized),
            "layers": len(layers),
            "ranks": json.dumps(ranks),
            "original_test_acc": test_acc,
            "original_test_loss": test_loss,
        }
        before = evaluate(small, data.test_x, data.test_y, batch, loss)
        history = finetune(small, data, loss=loss, **finetune_args)
        after = evaluate(small, data.test_x, data.test_y, batch, loss)
        for stage, (stage_loss, stage_acc) in (("before", before), ("after", after)):
            rows.append(
                {
                    **common,
                    "stage": stage,
                    "finetune_epochs": len(history) if stage == "after" else 0,
                    "test_acc": stage_acc,
                    "test_loss": stage_loss,
                    "acc_drop": test_acc - stage_acc,
                }
            )
        log(
            f"{method} e={common['selection']} {energy}: {len(factorized)}/{len(layers)} "
            "layers factorized, "
            f"params {params}/{original_params}, test acc {test_acc:.4f} → "
            f"{before[1]:.4f} → {after[1]:.4f} after {len(history)} epochs"
        )
    return rows
