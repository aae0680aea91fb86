"""Networks of the weight-decay sweep."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, classes: int, depth: int, width: int, bias: bool) -> nn.Sequential:
    """ReLU MLP with ``depth`` linear layers: depth − 1 hidden layers of ``width``, then K outputs.

    No BatchNorm: the stationarity argument of SCIENCE.md needs plain weight decay on
    every layer's weights.
    """
    if depth < 1:
        raise ValueError(f"model.depth must be at least 1, got {depth}")
    dims = [in_dim] + [width] * (depth - 1) + [classes]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if i < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build_model(arch: dict, in_shape: tuple[int, ...], classes: int) -> nn.Module:
    """The model a study's ``model`` section describes, for inputs of ``in_shape``."""
    if arch["arch"] == "mlp":
        in_dim = 1
        for d in in_shape:
            in_dim *= d
        return mlp(in_dim, classes, arch["depth"], arch["width"], arch["bias"])
    raise ValueError(f"model.arch must be one of ['mlp'], got {arch['arch']!r}")


def measured_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The linear layers whose weights and input embeddings are measured, named layer1…layerL."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return [(f"layer{i + 1}", m) for i, m in enumerate(linears)]
