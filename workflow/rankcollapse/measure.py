"""Rule ``measure``: the measures of one trained run. The spectrum of every layer's weight and,
from two streaming passes over the training set, the statistics of every layer's input and
backprop errors (:mod:`rankcollapse.statistics`), turned into measures by the formulas of
:mod:`rankcollapse.measures`, and how much of each weight is still its initial matrix. On the
CPU whatever the training device, accumulated in float64; forward passes in the precision of
the saved weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from . import files
from .device import CPU
from .features import Features
from .layers import capture, input_rows, measured_layers, output_rows, row_labels
from .losses import evaluate, loss_spec, per_sample_loss
from .measures import (
    bound_summary,
    equiangularity,
    global_mean,
    init_alignment,
    norm_spread,
    self_duality,
    singular_values,
    spectral_summary,
    variability_summary,
)
from .models import initial_model
from .statistics import EmbeddingStats, GradientStats


@dataclass
class LayerStatistics:
    embeddings: dict[str, EmbeddingStats]
    gradients: dict[str, GradientStats]
    ncc_mismatch: float
    train_loss: float
    train_acc: float


def layer_statistics(model: nn.Module, data: Features, batch: int, loss: dict) -> LayerStatistics:
    """Two streaming passes over the training set. First the class means of every layer's
    input, and the training loss and accuracy; then, centred at the means, the spread (TCV,
    SS_c, scatter), and the backprop errors δ_i = ∂loss_i/∂h_i of every layer against its
    input (G, D_c, max ||δ_i||), and how often the prediction disagrees with the nearest class
    mean of the last layer's input (NC4).
    """
    layers = measured_layers(model)
    last = layers[-1][0]
    stats: dict[str, EmbeddingStats] = {}
    grads: dict[str, GradientStats] = {}
    batches = list(zip(data.train_x.split(batch), data.train_y.split(batch), strict=True))
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.train_x.device)
    correct = 0
    with capture(layers, outputs=True) as (inputs, outputs):
        with torch.no_grad():
            for xb, yb in batches:
                out = model(xb)
                loss_sum += per_sample_loss(out, yb, **loss).sum().double()
                correct += int((out.argmax(1) == yb).sum())
                for name, module in layers:
                    z = input_rows(module, inputs[name])
                    if name not in stats:
                        stats[name] = EmbeddingStats(data.classes, z.shape[1], z.device)
                    stats[name].add_to_means(z, row_labels(yb, z))
        for s in stats.values():
            s.finish_means()
        ncc_mismatch = 0
        for xb, yb in batches:
            out = model(xb)
            hs = [outputs[name] for name, _ in layers]
            deltas = torch.autograd.grad(per_sample_loss(out, yb, **loss).sum(), hs)
            with torch.no_grad():
                for (name, module), delta in zip(layers, deltas, strict=True):
                    z = input_rows(module, inputs[name]).double()  # once for both accumulators
                    delta_rows, y_rows = output_rows(module, delta), row_labels(yb, z)
                    stats[name].add_to_spread(z, y_rows)
                    if name not in grads:
                        grads[name] = GradientStats(
                            data.classes, z.shape[1], delta_rows.shape[1], z.device
                        )
                    grads[name].add(delta_rows, z, y_rows)
                z = inputs[last].reshape(len(yb), -1).double()
                nearest = torch.cdist(z, stats[last].means).argmin(1)
                ncc_mismatch += int((nearest != out.argmax(1)).sum())
    n = len(data.train_y)
    return LayerStatistics(stats, grads, ncc_mismatch / n, float(loss_sum) / n, correct / n)


def last_layer_collapse(weight: torch.Tensor, stats: EmbeddingStats, ncc_mismatch: float):
    """NC2-NC4 of the last layer: its input's class means μ_c and its weight rows w_c."""
    means, counts = stats.means.cpu(), stats.counts.cpu()
    centred = means - global_mean(means, counts)
    w = weight.detach().double().cpu()
    std_cos, max_angle = equiangularity(centred)
    w_std_cos, w_max_angle = equiangularity(w)
    return {
        "nc2_equinorm_means": norm_spread(centred),
        "nc2_equinorm_weights": norm_spread(w),
        "nc2_equiangular_means": std_cos,
        "nc2_maxangle_means": max_angle,
        "nc2_equiangular_weights": w_std_cos,
        "nc2_maxangle_weights": w_max_angle,
        "nc3_self_duality": self_duality(w, centred),
        "nc4_ncc_mismatch": ncc_mismatch,
    }


def measure_run(
    model: nn.Module,
    data: Features,
    eps_list: list[float],
    batch: int,
    wd: float,
    loss: dict,
    initial: nn.Module | None = None,
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """One row per measured layer (spectral, variability and bound measures; with the
    ``initial`` model, how much of each weight is its initial matrix; NC2-NC4 on the last
    layer; train/test accuracy and loss) and the float64 spectrum of every layer.
    """
    model.eval()
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y, batch, loss)
    statistics = layer_statistics(model, data, batch, loss)
    stats, grads = statistics.embeddings, statistics.gradients
    layers = measured_layers(model)
    initial_layers = dict(measured_layers(initial)) if initial is not None else {}
    rows, spectra = [], {}
    for index, (name, layer) in enumerate(layers):
        s = singular_values(layer.weight.cpu())
        spectra[name] = s
        spectral = spectral_summary(s, data.classes, eps_list)
        variability = variability_summary(stats[name])
        bound = bound_summary(
            layer.weight.detach(),
            grads[name],
            stats[name].means,
            variability["tcv"],
            spectral["tail_K"],
            wd,
            len(data.train_y),
        )
        collapse = (
            last_layer_collapse(layer.weight, stats[name], statistics.ncc_mismatch)
            if index == len(layers) - 1
            else {}
        )
        rows.append(
            {
                "layer": name,
                "layer_index": index + 1,
                "d_out": layer.weight.shape[0],
                "d_in": layer.weight[0].numel(),
                "classes": data.classes,
                **spectral,
                **variability,
                **bound,
                **(
                    init_alignment(layer.weight.detach(), initial_layers[name].weight.detach())
                    if initial_layers
                    else {"init_share": float("nan"), "init_cosine": float("nan")}
                ),
                **collapse,
                "train_loss": statistics.train_loss,
                "train_acc": statistics.train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
            }
        )
    return rows, spectra


def measure(
    data: str,
    model: str,
    metadata: str,
    layers: str,
    spectra: str,
    eps: list[float],
    batch_size: int,
    threads: int,
    log: Callable[[str], None] = print,
) -> None:
    """Measure one run and write its layer table and spectra (a run that did not finish
    gets one marked row and no spectra).
    """
    torch.set_num_threads(threads)
    meta, features, net = files.load_run(metadata, model, data, CPU)
    spec = meta["spec"]
    if meta["status"] == "finished":
        initial = initial_model(spec["model"], features.in_shape, features.classes, spec["seed"])
        rows, spectrum = measure_run(
            net, features, eps, batch_size, spec["weight_decay"], loss_spec(spec), initial
        )
    else:
        log(f"run is {meta['status']} ({meta['reason']}): no measures, row marked")
        rows, spectrum = [], {}
    table = files.write_run_table(layers, meta, rows)
    files.save_tensors(spectra, spectrum)
    log(table.to_string())
