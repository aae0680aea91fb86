"""Networks of the weight-decay sweep."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


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


def cnn(
    in_shape: tuple[int, ...], classes: int, channels: list[int], width: int, bias: bool
) -> nn.Sequential:
    """Small CNN without BatchNorm: per entry of ``channels`` a 3×3 convolution (padding 1),
    ReLU and 2×2 max-pooling; then a hidden linear layer of ``width`` with ReLU, and K outputs.
    """
    layers: list[nn.Module] = []
    c, h, w = in_shape
    for out in channels:
        layers += [nn.Conv2d(c, out, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = out, h // 2, w // 2
    layers += [
        nn.Flatten(),
        nn.Linear(c * h * w, width, bias=bias),
        nn.ReLU(),
        nn.Linear(width, classes, bias=bias),
    ]
    return nn.Sequential(*layers)


def build_model(arch: dict, in_shape: tuple[int, ...], classes: int) -> nn.Module:
    """The model a study's ``model`` section describes, for inputs of ``in_shape``."""
    if arch["arch"] == "mlp":
        in_dim = 1
        for d in in_shape:
            in_dim *= d
        return mlp(in_dim, classes, arch["depth"], arch["width"], arch["bias"])
    if arch["arch"] == "cnn":
        if len(in_shape) != 3:
            raise ValueError(f"model.arch 'cnn' needs image inputs (C, H, W), got {in_shape}")
        return cnn(in_shape, classes, arch["channels"], arch["width"], arch["bias"])
    raise ValueError(f"model.arch must be one of ['mlp', 'cnn'], got {arch['arch']!r}")


def measured_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The linear and convolutional layers whose weights and inputs are measured, in order,
    named layer1…layerL.
    """
    found = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    return [(f"layer{i + 1}", m) for i, m in enumerate(found)]


def as_rows(module: nn.Module, z: torch.Tensor, h: torch.Tensor, y: torch.Tensor):
    """A layer's input z, output-side tensor h (its output or the gradient there) and labels as
    rows of one linear map h_r = W z_r: one row per sample for a linear layer; for a
    convolution one row per sample and position, z_r the input patch (C_in·kh·kw) and h_r the
    output channels there, labelled with the sample's class. The convolution is then the
    matrix W of shape C_out × C_in·kh·kw.
    """
    if isinstance(module, nn.Conv2d):
        patches = functional.unfold(
            z, module.kernel_size, module.dilation, module.padding, module.stride
        )
        positions = patches.shape[2]
        z_rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        h_rows = h.flatten(2).transpose(1, 2).reshape(-1, h.shape[1])
        return z_rows, h_rows, y.repeat_interleave(positions)
    return z.reshape(z.shape[0], -1), h, y
