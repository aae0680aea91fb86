"""Rule ``compress``: paper B's compression of one trained run. Every layer is factorized
to its utilized rank at an energy (fixed, or chosen per layer by a search on half of the test
set), data-driven (factors of W' = P_T W P_S) against plain truncated SVD at the same ranks,
each evaluated before and after the same end-to-end fine-tuning.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable

import torch
from torch import nn

from . import files, sgd
from .device import resolve_device
from .features import Features, split_test_set
from .layers import replace_module, utilized_layers, weight_matrix, with_weights
from .losses import evaluate, loss_spec
from .utilization import (
    factorize,
    parameter_count,
    project_layer,
    project_layer_at,
    saves_parameters,
)


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


def choose_energies(
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
        moment = moments[name].to(module.weight.device)
        at = project_layer_at(weight_matrix(module), moment, sorted({*energies, 1.0}))
        choice[name] = 1.0
        for e in sorted(energies):
            projected = at[e]["projected"]
            _, acc = evaluate(with_weights(model, {**chosen, name: projected}), x, y, batch, loss)
            if reference - acc <= tolerance:
                choice[name] = e
                break
        chosen[name] = at[choice[name]]["projected"]
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
    """At energy e (or at a per-layer energy, from choose_energies): the utilized rank r of
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
        history = sgd.finetune(small, data, loss=loss, **finetune_args)
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


def compress(
    data: str,
    model: str,
    metadata: str,
    moments: str,
    energy: str,
    table: str,
    search_energies: list[float],
    tolerance: float,
    finetune_epochs: int,
    finetune_lr: float,
    batch_size: int,
    device: str,
    threads: int,
    log: Callable[[str], None] = print,
) -> None:
    """Compress one run at ``energy`` (a number, or ``search``) and write its table (a run
    that did not finish gets one marked row).
    """
    torch.set_num_threads(threads)
    meta, features, net = files.load_run(metadata, model, data, resolve_device(device))
    spec = meta["spec"]
    if meta["status"] != "finished":
        log(f"run is {meta['status']} ({meta['reason']}): no compression, row marked")
        files.write_run_table(table, meta, [])
        return
    second_moments, _ = files.load_tensors(moments)
    finetune_args = {
        "epochs": finetune_epochs,
        "lr": finetune_lr,
        "momentum": spec["optimizer"]["momentum"],
        "batch_size": spec["optimizer"]["batch_size"],
        "weight_decay": spec["weight_decay"],
        "seed": spec["seed"],
    }
    chosen: float | dict[str, float]
    if energy == "search":
        # Select on one half of the test set, report on the other.
        validation, evaluation = split_test_set(len(features.test_y))
        chosen = choose_energies(
            net,
            features.test_x[validation],
            features.test_y[validation],
            second_moments,
            search_energies,
            tolerance,
            batch_size,
            loss_spec(spec),
        )
        log(f"energies chosen on {len(validation)} validation samples: {chosen}")
        features = Features(
            features.train_x,
            features.train_y,
            features.test_x[evaluation],
            features.test_y[evaluation],
            features.classes,
        )
    else:
        chosen = float(energy)
    rows = compress_run(
        net, features, second_moments, chosen, finetune_args, batch_size, loss_spec(spec), log
    )
    result = files.write_run_table(table, meta, rows)
    log(result.drop(columns=["ranks"]).to_string())
