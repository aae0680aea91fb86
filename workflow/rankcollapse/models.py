"""Networks of the weight-decay sweep."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

ACTIVATIONS = ("relu", "softplus", "gelu", "silu")


def activation(name: str, beta: float | None) -> nn.Module:
    """The nonlinearity of an MLP or CNN. ReLU's minimisers sit on its kink, where the gradient
    of the objective cannot vanish smoothly; softplus_β(x) = log(1 + e^{βx})/β (ReLU as β → ∞),
    GELU and SiLU are smooth, so a stationary point can be reached to round-off.
    """
    if name == "relu":
        return nn.ReLU()
    if name == "softplus":
        return nn.Softplus(beta=beta)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"model.activation must be one of {list(ACTIVATIONS)}, got {name!r}")


def mlp(
    in_dim: int,
    classes: int,
    depth: int,
    width: int,
    bias: bool,
    act: str = "relu",
    beta: float | None = None,
) -> nn.Sequential:
    """MLP with ``depth`` linear layers: depth − 1 hidden layers of ``width`` each followed by
    the activation ``act``, then K outputs.

    No BatchNorm: the stationarity argument of docs/science.md needs plain weight decay on
    every layer's weights.
    """
    if depth < 1:
        raise ValueError(f"model.depth must be at least 1, got {depth}")
    dims = [in_dim] + [width] * (depth - 1) + [classes]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if i < depth - 1:
            layers.append(activation(act, beta))
    return nn.Sequential(*layers)


def cnn(
    in_shape: tuple[int, ...],
    classes: int,
    channels: list[int],
    width: int,
    bias: bool,
    act: str = "relu",
    beta: float | None = None,
) -> nn.Sequential:
    """Small CNN without BatchNorm: per entry of ``channels`` a 3×3 convolution (padding 1),
    the activation and 2×2 max-pooling; then a hidden linear layer of ``width`` with the
    activation, and K outputs.
    """
    layers: list[nn.Module] = []
    c, h, w = in_shape
    for out in channels:
        conv = nn.Conv2d(c, out, 3, padding=1, bias=bias)
        layers += [conv, activation(act, beta), nn.MaxPool2d(2)]
        c, h, w = out, h // 2, w // 2
    layers += [
        nn.Flatten(),
        nn.Linear(c * h * w, width, bias=bias),
        activation(act, beta),
        nn.Linear(width, classes, bias=bias),
    ]
    return nn.Sequential(*layers)


class Attention(nn.Module):
    """Multi-head self-attention with explicit linear layers ``qkv`` (dim → 3·dim) and
    ``proj`` (dim → dim), so that both are hooked and measured like any linear layer.
    """

    def __init__(self, dim: int, heads: int, bias: bool):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.dim ({dim}) must be a multiple of model.heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, bias: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, bias)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim, bias=bias)
        self.fc2 = nn.Linear(mlp_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(functional.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """A small Vision Transformer: non-overlapping p×p patches, a linear patch embedding,
    learned position embeddings (and a class token with ``pool = "cls"``), ``depth`` pre-norm
    blocks, a final LayerNorm and a linear head on the class token or the mean of the tokens.
    No dropout; weight decay acts on every parameter as SGD applies it.
    """

    # Paper B measures the linear layers inside the blocks (qkv, proj, fc1, fc2).
    block_prefix = "blocks."

    def __init__(
        self,
        in_shape: tuple[int, ...],
        classes: int,
        patch_size: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        pool: str,
        bias: bool,
    ):
        super().__init__()
        c, h, w = in_shape
        if h % patch_size or w % patch_size:
            raise ValueError(f"model.patch_size {patch_size} must divide the image size {h}×{w}")
        if pool not in ("cls", "mean"):
            raise ValueError(f"model.pool must be 'cls' or 'mean', got {pool!r}")
        self.patch_size, self.pool = patch_size, pool
        tokens = (h // patch_size) * (w // patch_size) + (pool == "cls")
        self.embed = nn.Linear(c * patch_size * patch_size, dim, bias=bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_dim, bias) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes, bias=bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the head reads: the normalised class token, or the mean of the tokens."""
        p = self.patch_size
        patches = functional.unfold(x, p, stride=p).transpose(1, 2)  # B × T × C·p·p
        z = self.embed(patches)
        if self.cls_token is not None:
            z = torch.cat([self.cls_token.expand(len(z), -1, -1), z], dim=1)
        z = self.norm(self.blocks(z + self.pos))
        return z[:, 0] if self.pool == "cls" else z.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def representation(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of a network's last linear layer (its head): the features a linear probe
    reads and self-supervised pre-training shapes.
    """
    if isinstance(model, ViT):
        return model.features(x)
    return model[:-1](x)


def head(model: nn.Module) -> nn.Linear:
    """A network's last linear layer, which maps the :func:`representation` to the K logits."""
    return model.head if isinstance(model, ViT) else model[-1]


def initial_model(arch: dict, in_shape: tuple[int, ...], classes: int, seed: int) -> nn.Module:
    """The model a run of seed ``seed`` starts from (torch's global generator seeded, then the
    model built), so that its initial weights can be regenerated after training.
    """
    torch.manual_seed(seed)
    return build_model(arch, in_shape, classes)


def build_model(arch: dict, in_shape: tuple[int, ...], classes: int) -> nn.Module:
    """The model a study's ``model`` section describes, for inputs of ``in_shape``."""
    if arch["arch"] == "mlp":
        in_dim = 1
        for d in in_shape:
            in_dim *= d
        return mlp(
            in_dim,
            classes,
            arch["depth"],
            arch["width"],
            arch["bias"],
            arch["activation"],
            arch.get("beta"),
        )
    if arch["arch"] == "cnn":
        if len(in_shape) != 3:
            raise ValueError(f"model.arch 'cnn' needs image inputs (C, H, W), got {in_shape}")
        return cnn(
            in_shape,
            classes,
            arch["channels"],
            arch["width"],
            arch["bias"],
            arch["activation"],
            arch.get("beta"),
        )
    if arch["arch"] == "vit":
        if len(in_shape) != 3:
            raise ValueError(f"model.arch 'vit' needs image inputs (C, H, W), got {in_shape}")
        return ViT(
            in_shape,
            classes,
            arch["patch_size"],
            arch["dim"],
            arch["depth"],
            arch["heads"],
            arch["width"],
            arch["pool"],
            arch["bias"],
        )
    raise ValueError(f"model.arch must be one of ['mlp', 'cnn', 'vit'], got {arch['arch']!r}")
