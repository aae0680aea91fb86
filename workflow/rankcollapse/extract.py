"""Measures of one trained run: spectra of every layer, statistics of every layer's input."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .measures import EmbeddingStats, singular_values, spectral_summary
from .models import measured_layers
from .training import Features


@contextmanager
def capture_inputs(layers: list[tuple[str, nn.Module]]):
    """Forward pre-hooks that keep the latest input of each layer, by name."""
    captured: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_pre_hook(
            lambda _m, args, name=name: captured.__setitem__(name, args[0])
        )
        for name, module in layers
    ]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y)."""
    loss, correct = torch.zeros((), dtype=torch.float64, device=x.device), 0
    for xb, yb in zip(x.split(batch), y.split(batch), strict=True):
        out = model(xb)
        loss += nn.functional.cross_entropy(out, yb, reduction="sum").double()
        correct += int((out.argmax(1) == yb).sum())
    return float(loss) / len(y), correct / len(y)


@torch.no_grad()
def embedding_summaries(model: nn.Module, data: Features, batch: int) -> dict[str, dict]:
    """Variability measures of each measured layer's input on the training set, in two
    streaming passes (class means first, then the spread around them).
    """
    layers = measured_layers(model)
    stats: dict[str, EmbeddingStats] = {}
    with capture_inputs(layers) as captured:
        for pass_ in ("means", "spread"):
            for xb, yb in zip(data.train_x.split(batch), data.train_y.split(batch), strict=True):
                model(xb)
                for name, z in captured.items():
                    if name not in stats:
                        stats[name] = EmbeddingStats(data.classes, z[0].numel(), z.device)
                    if pass_ == "means":
                        stats[name].add_to_means(z, yb)
                    else:
                        stats[name].add_to_spread(z, yb)
            if pass_ == "means":
                for s in stats.values():
                    s.finish_means()
    return {name: s.summary() for name, s in stats.items()}


def measure_run(
    model: nn.Module, data: Features, eps_list: list[float], batch: int
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """One row per measured layer (spectral and variability measures, train/test accuracy and
    loss) and the float64 spectrum of every layer.
    """
    model.eval()
    train_loss, train_acc = evaluate(model, data.train_x, data.train_y, batch)
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y, batch)
    variability = embedding_summaries(model, data, batch)
    rows, spectra = [], {}
    for index, (name, layer) in enumerate(measured_layers(model)):
        s = singular_values(layer.weight)
        spectra[name] = s
        rows.append(
            {
                "layer": name,
                "layer_index": index + 1,
                "d_out": layer.weight.shape[0],
                "d_in": layer.weight[0].numel(),
                "classes": data.classes,
                **spectral_summary(s, data.classes, eps_list),
                **variability[name],
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
            }
        )
    return rows, spectra
