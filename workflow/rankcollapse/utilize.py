"""Rule ``utilize``: paper B on one trained run, the utilized rank of every layer it
measures. The formulas are in :mod:`rankcollapse.utilization`; compression to these ranks is
rule ``compress`` (:mod:`rankcollapse.compress`).

Which layers: every linear and convolutional layer of an MLP or CNN (a convolution as the
matrix C_out × C_in·k·k on input patches); of a ViT, the qkv, projection and MLP layers of its
blocks (tokens are the calibration samples), not the patch embedding or the head.
Calibration inputs: a fixed random subset of the training set (seed 0, the same for every run
of a dataset). Held-out data: the test set. Baseline: the same utilization of the run's initial
weights (the untrained network, regenerated from the run's seed as ``measure`` does for
init_share), on the same calibration samples and energies.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import files
from .device import CPU
from .features import Features, calibration_indices
from .layers import capture, input_rows, layer_kind, utilized_layers, weight_matrix, with_weights
from .losses import evaluate, loss_spec
from .models import initial_model
from .statistics import SecondMoment
from .utilization import output_error_terms, project_layer_at, relative_error, utilization


@torch.no_grad()
def input_moments(model: nn.Module, x: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    """C_in = Σ x xᵀ (float64, streaming) of every utilized layer's input rows over ``x``."""
    model.eval()
    layers = utilized_layers(model)
    moments: dict[str, SecondMoment] = {}
    with capture(layers) as (inputs, _):
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


INIT_COLUMNS = [
    "init_utilization",
    "init_svd_utilization",
    "init_k_S_fraction",
    "init_k_T_fraction",
]


def initial_utilization(
    initial: nn.Module | None, x: torch.Tensor, energies: list[float], batch: int
) -> dict[tuple[str, float], dict[str, float]]:
    """The random-initialisation baseline: per (layer, energy) the utilization, plain-SVD
    utilization and k_S/d_in, k_T/d_out of the untrained network ``initial`` on the calibration
    samples ``x`` (its own layer inputs: the untrained network's forward pass). NaN when no
    initial network is given.
    """
    if initial is None:
        return {}
    initial = initial.to(x.dtype).eval()
    moments = input_moments(initial, x, batch)
    baseline = {}
    for name, _, module in utilized_layers(initial):
        w = weight_matrix(module)
        d_out, d_in = w.shape
        for e, p in project_layer_at(w, moments[name], energies).items():
            baseline[name, e] = {
                "init_utilization": utilization(p["rank"], d_in, d_out),
                "init_svd_utilization": utilization(p["svd_rank"], d_in, d_out),
                "init_k_S_fraction": p["k_S"] / d_in,
                "init_k_T_fraction": p["k_T"] / d_out,
            }
    return baseline


def utilize_run(
    model: nn.Module,
    data: Features,
    energies: list[float],
    calibration_samples: int,
    batch: int,
    loss: dict,
    initial: nn.Module | None = None,
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """One row per utilized layer and energy e: d_in, d_out, k_S, k_T, utilized rank r and
    utilization r / min(d_in, d_out), the plain-SVD rank of W at e and its utilization, the
    layer's relative output error ‖W'X − WX‖_F/‖WX‖_F on the test set (inputs from the original
    network), and, for the whole network with every utilized layer replaced by W', the relative
    error of its logits and its test accuracy; with the ``initial`` (untrained) network, its
    utilization, plain-SVD utilization, k_S/d_in and k_T/d_out on the same calibration samples
    (the ``init_*`` columns, NaN without it). Also returns C_in of every layer.
    """
    model.eval()
    index = calibration_indices(len(data.train_y), calibration_samples)
    moments = input_moments(model, data.train_x[index], batch)
    layers = utilized_layers(model)
    baseline = initial_utilization(initial, data.train_x[index], energies, batch)
    no_baseline = dict.fromkeys(INIT_COLUMNS, float("nan"))
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y, batch, loss)
    projections = {
        (name, e): p
        for name, _, module in layers
        for e, p in project_layer_at(weight_matrix(module), moments[name], energies).items()
    }
    # Per-layer output error on the test set, inputs from the original network.
    sums = {key: [0.0, 0.0] for key in projections}
    with torch.no_grad(), capture(layers) as (inputs, _):
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
                    **baseline.get((name, e), no_baseline),
                    "rel_output_error": relative_error(*sums[name, e]),
                    **network[e],
                    "test_acc": test_acc,
                    "test_loss": test_loss,
                    "test_samples": len(data.test_y),
                    "calibration_samples": len(index),
                }
            )
    return rows, {name: m.cpu() for name, m in moments.items()}


def utilize(
    data: str,
    model: str,
    metadata: str,
    table: str,
    moments: str,
    energies: list[float],
    calibration_samples: int,
    batch_size: int,
    threads: int,
    log: Callable[[str], None] = print,
) -> None:
    """Utilize one run (on the CPU, like ``measure``) and its initial weights, regenerated
    from the run's seed, and write its table and the C_in of every layer (a run that did not
    finish gets one marked row and no moments).
    """
    torch.set_num_threads(threads)
    meta, features, net = files.load_run(metadata, model, data, CPU)
    spec = meta["spec"]
    if meta["status"] == "finished":
        initial = initial_model(spec["model"], features.in_shape, features.classes, spec["seed"])
        rows, second_moments = utilize_run(
            net, features, energies, calibration_samples, batch_size, loss_spec(spec), initial
        )
    else:
        log(f"run is {meta['status']} ({meta['reason']}): no measures, row marked")
        rows, second_moments = [], {}
    result = files.write_run_table(table, meta, rows)
    files.save_tensors(moments, second_moments)
    if not rows:
        return
    for e, group in result.groupby("energy"):
        log(
            f"e={e:g}: MLU {group['utilization'].mean():.3f}, plain-SVD "
            f"{group['svd_utilization'].mean():.3f} (untrained: "
            f"{group['init_utilization'].mean():.3f}, {group['init_svd_utilization'].mean():.3f})"
            f", network rel. error "
            f"{group['network_rel_error'].iloc[0]:.3g}, test acc "
            f"{group['test_acc'].iloc[0]:.4f} → {group['network_test_acc'].iloc[0]:.4f}"
        )
    columns = ["layer", "kind", "d_in", "d_out", "energy", "k_S", "k_T", "rank", "svd_rank"]
    log(result[[*columns, "rel_output_error"]].to_string())
