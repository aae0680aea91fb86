"""Streaming accumulators over a dataset, kept apart from the measures made from them
(:mod:`rankcollapse.measures`, :mod:`rankcollapse.utilization`). Each adds one batch of rows
at a time in float64, so memory does not grow with the number of samples N.
"""

from __future__ import annotations

import torch

from .measures import between_class_span


class EmbeddingStats:
    """Streaming per-class statistics of embeddings z_i ∈ R^d with labels y_i ∈ {0..K−1}.

    Two passes over the data: :meth:`add_to_means` accumulates class sums and counts, then
    :meth:`add_to_spread` (after :meth:`finish_means`) accumulates the quantities centred at
    the class means: TCV = Σ_i ||z_i − μ_c(i)||₂, per-class SS_c = Σ_{i∈c} ||z_i − μ_c||² and
    the within-class scatter on the range of Σ_B, Vᵀ S_W V with S_W = Σ_i (z_i − μ_c(i))
    (z_i − μ_c(i))ᵀ (r × r, r ≤ K, instead of d × d: all NC1 needs). All in float64.
    """

    def __init__(self, classes: int, dim: int, device: torch.device | str = "cpu"):
        kw = {"dtype": torch.float64, "device": device}
        self.classes = classes
        self.sums = torch.zeros(classes, dim, **kw)
        self.counts = torch.zeros(classes, **kw)
        self.means: torch.Tensor | None = None
        self.span: torch.Tensor | None = None
        self.tcv = torch.zeros((), **kw)
        self.ss_per_class = torch.zeros(classes, **kw)
        self.scatter_in_span: torch.Tensor | None = None

    def add_to_means(self, z: torch.Tensor, y: torch.Tensor) -> None:
        z = z.reshape(z.shape[0], -1).double()
        self.sums.index_add_(0, y, z)
        self.counts += torch.bincount(y, minlength=self.classes).double()

    def finish_means(self) -> None:
        if (self.counts == 0).any():
            missing = torch.nonzero(self.counts == 0).flatten().tolist()
            raise ValueError(f"classes {missing} have no samples; every class needs at least one")
        self.means = self.sums / self.counts[:, None]
        self.span = between_class_span(self.means, self.counts)
        rank = self.span.shape[1]
        self.scatter_in_span = self.means.new_zeros(rank, rank)

    def add_to_spread(self, z: torch.Tensor, y: torch.Tensor) -> None:
        centred = z.reshape(z.shape[0], -1).double() - self.means[y]
        sq = (centred**2).sum(1)
        self.tcv += sq.sqrt().sum()
        self.ss_per_class.index_add_(0, y, sq)
        projected = centred @ self.span
        self.scatter_in_span += projected.T @ projected


class GradientStats:
    """Streaming sums over the training set of a layer's backprop errors δ_i = ∂loss_i/∂h_i
    (h_i = W z_i the layer's pre-activation) against its inputs z_i, in float64:
    G = Σ_i δ_i z_iᵀ, per-class D_c = Σ_{i∈c} δ_i, and max_i ||δ_i||₂.
    """

    def __init__(self, classes: int, d_in: int, d_out: int, device: torch.device | str = "cpu"):
        kw = {"dtype": torch.float64, "device": device}
        self.g = torch.zeros(d_out, d_in, **kw)
        self.d = torch.zeros(classes, d_out, **kw)
        self.delta_max = torch.zeros((), **kw)

    def add(self, delta: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> None:
        delta, z = delta.double(), z.reshape(z.shape[0], -1).double()
        self.g += delta.T @ z
        self.d.index_add_(0, y, delta)
        self.delta_max = torch.maximum(self.delta_max, delta.norm(dim=1).max())


class SecondMoment:
    """Streaming uncentred second moment C = Σ_i x_i x_iᵀ of row vectors x_i, in float64."""

    def __init__(self, dim: int, device: torch.device | str = "cpu"):
        self.matrix = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self.count = 0

    def add(self, rows: torch.Tensor) -> None:
        """C ← C + XᵀX for a batch X of rows (n × dim)."""
        x = rows.detach().reshape(-1, self.matrix.shape[0]).double()
        self.matrix += x.T @ x
        self.count += x.shape[0]
