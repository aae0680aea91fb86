"""The layers both papers measure, each as one matrix W acting on rows of its input.

A linear layer is h = W z; a convolution is the matrix W of shape C_out × C_in·kh·kw acting
on the input patch at every position; a linear layer applied to tokens (B × T × d, a ViT)
acts on every token. Each position or token is one row, labelled with its sample's class:
∂loss/∂W = Σ_i Σ_r δ_ir z_irᵀ, so the rank-collapse decomposition holds with rows in place of
samples and N still the number of samples.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional


def measured_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The linear and convolutional layers whose weights and inputs are measured, in order,
    named layer1…layerL.
    """
    found = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    return [(f"layer{i + 1}", m) for i, m in enumerate(found)]


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


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """W as a d_out × d_in float64 matrix (a convolution kernel flattened per output channel)."""
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1).double()


def set_weight(module: nn.Module, matrix: torch.Tensor) -> None:
    """Overwrite a layer's weight with a d_out × d_in matrix (reshaped to a kernel for Conv2d)."""
    with torch.no_grad():
        module.weight.copy_(matrix.reshape(module.weight.shape).to(module.weight.dtype))


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` where the sub-module at ``path`` (e.g. ``blocks.0.attn.qkv``) is."""
    parent_path, _, attribute = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attribute, new)


def with_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of the model whose utilized layers (by name) have the given weight matrices."""
    projected = copy.deepcopy(model)
    for name, _, module in utilized_layers(projected):
        if name in weights:
            set_weight(module, weights[name])
    return projected


def input_rows(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """A layer's input as rows z_r of h_r = W z_r: unfolded patches of a convolution, tokens
    (every leading axis flattened) of a linear layer.
    """
    if isinstance(module, nn.Conv2d):
        patches = functional.unfold(
            z, module.kernel_size, module.dilation, module.padding, module.stride
        )
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return z.reshape(-1, z.shape[-1])


def output_rows(module: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The output side (the layer's output, or the loss gradient there) in the rows of
    :func:`input_rows`: channels at each position of a convolution, each token's features.
    """
    if isinstance(module, nn.Conv2d):
        return h.flatten(2).transpose(1, 2).reshape(-1, h.shape[1])
    return h.reshape(-1, h.shape[-1])


def row_labels(y: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The class of every row of :func:`input_rows` or :func:`output_rows` (rows are
    sample-major): its sample's label, repeated over the sample's positions or tokens.
    """
    per_sample = len(rows) // len(y)
    return y if per_sample == 1 else y.repeat_interleave(per_sample)


@contextmanager
def capture(layers: list[tuple], outputs: bool = False):
    """Hooks on each layer of ``layers`` ((name, module) or (name, path, module), as
    :func:`measured_layers` and :func:`utilized_layers` give them) that keep its latest input
    z (detached), by name, and with
    ``outputs`` its output h = W z too (attached, so that ∂loss/∂h can be taken).
    Yields the dicts ``inputs`` and ``outputs``.
    """
    seen_in: dict[str, torch.Tensor] = {}
    seen_out: dict[str, torch.Tensor] = {}
    handles = []
    for name, *_, module in layers:
        handles.append(
            module.register_forward_pre_hook(
                lambda _m, args, name=name: seen_in.__setitem__(name, args[0].detach())
            )
        )
        if outputs:
            handles.append(
                module.register_forward_hook(
                    lambda _m, _args, out, name=name: seen_out.__setitem__(name, out)
                )
            )
    try:
        yield seen_in, seen_out
    finally:
        for h in handles:
            h.remove()
