"""Utilized rank (paper B): data-driven projection of a linear layer onto the subspaces where
its inputs and outputs live, and factorization of the projected layer.

Conventions: a layer is y = W x (+ b) with W of shape d_out × d_in (PyTorch layout). A
convolution is the matrix W of shape C_out × C_in·k_h·k_w acting on input patches (one sample
per image and position, as in the rank-collapse measures); a linear layer applied to tokens
(B × T × d) has one sample per token. Every decomposition is computed in float64.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .measures import singular_values

# Relative tolerance of the rank of W' = P_T W P_S: #{σ_j(W') > RANK_RTOL · σ_1(W')}.
# W' is formed in float64 from orthogonal projectors, so the singular values it should not
# have are round-off, about 1e-15 σ_1; 1e-8 sits far above them and far below any singular
# value the data keeps, so r is the algebraic rank of W' (≤ min(k_S, k_T)).
RANK_RTOL = 1e-8
# Eigenvalues of a float64 second moment at or below EIGEN_RTOL · λ_1 count as zero: the
# symmetric eigensolver's round-off is about d · 1e-16 · λ_1, and energies e < 1 never reach
# such eigenvalues anyway; only e = 1 (the exact support) depends on this floor.
EIGEN_RTOL = 1e-12


def eigen(moment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues λ_1 ≥ λ_2 ≥ … ≥ 0 (negative round-off clipped) and eigenvectors (columns)
    of a symmetric positive semi-definite matrix, by decreasing eigenvalue.
    """
    values, vectors = torch.linalg.eigh(moment.double())
    order = torch.argsort(values, descending=True)
    return values[order].clamp_min(0), vectors[:, order]


def energy_rank(values: torch.Tensor, energy: float) -> int:
    """k(e) = the smallest k with Σ_{j≤k} λ_j ≥ e · Σ_j λ_j, for λ sorted decreasingly
    (eigenvalues of a second moment, or squared singular values), after setting λ_j ≤
    EIGEN_RTOL · λ_1 (round-off) to 0. 0 when Σ λ_j = 0; e = 1 gives the number of non-zero
    λ_j. Non-decreasing in e.
    """
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    values = values.detach().double().clamp_min(0)
    if values.numel():
        values = torch.where(values > EIGEN_RTOL * values.max(), values, 0.0)
    total = float(values.sum())
    if total == 0:
        return 0
    if energy == 1:
        return int((values > 0).sum())
    cumulative = torch.cumsum(values, 0) / total
    # The last partial sum is 1 up to round-off; never ask for more components than exist.
    return min(int((cumulative < energy).sum()) + 1, len(values))


def projector(vectors: torch.Tensor, k: int) -> torch.Tensor:
    """P = U_k U_kᵀ, the orthogonal projector onto the span of the first k columns of U."""
    u = vectors[:, :k].double()
    return u @ u.T


def output_moment(weight: torch.Tensor, input_moment: torch.Tensor) -> torch.Tensor:
    """C_out = W C_in Wᵀ = Σ_i (W x_i)(W x_i)ᵀ: the outputs' second moment, without storing
    the outputs (the bias is left out: the projection acts on W x).
    """
    w = weight.double()
    return w @ input_moment.double() @ w.T


def utilized_rank(projected: torch.Tensor, rtol: float = RANK_RTOL) -> int:
    """r = rank(W') = #{σ_j(W') > rtol · σ_1(W')}, in float64 (see RANK_RTOL); 0 if W' = 0."""
    s = singular_values(projected)
    if s.numel() == 0 or float(s[0]) == 0:
        return 0
    return int((s > rtol * s[0]).sum())


def svd_energy_rank(weight: torch.Tensor, energy: float) -> int:
    """The plain-SVD rank of W at energy e: k(e) of the squared singular values σ_j(W)², i.e.
    the smallest k whose rank-k truncation keeps a fraction e of ‖W‖_F². Data-blind contrast.
    """
    return energy_rank(singular_values(weight) ** 2, energy)


def utilization(rank: int, d_in: int, d_out: int) -> float:
    """Layer utilization r / min(d_in, d_out)."""
    return rank / min(d_in, d_out)


def project_layer(weight: torch.Tensor, input_moment: torch.Tensor, energy: float) -> dict:
    """The data-driven projection of one layer at energy e:
    C_in = Σ x xᵀ → k_S = k(e) of its eigenvalues, P_S = U_{k_S} U_{k_S}ᵀ;
    C_out = W C_in Wᵀ → k_T and P_T likewise; W' = P_T W P_S; r = rank(W') ≤ min(k_S, k_T).
    Returns W' (float64) with k_S, k_T, r, and the plain-SVD rank of W at the same energy.
    """
    return project_layer_at(weight, input_moment, [energy])[energy]


def project_layer_at(
    weight: torch.Tensor, input_moment: torch.Tensor, energies: list[float]
) -> dict[float, dict]:
    """``project_layer`` at each energy, from one eigendecomposition of C_in and of C_out and
    one SVD of W (the energy only chooses how many of their components are kept).
    """
    w = weight.double()
    values_in, vectors_in = eigen(input_moment)
    values_out, vectors_out = eigen(output_moment(w, input_moment))
    squared_singular_values = singular_values(w) ** 2
    projections = {}
    for energy in energies:
        k_s = energy_rank(values_in, energy)
        k_t = energy_rank(values_out, energy)
        projected = projector(vectors_out, k_t) @ w @ projector(vectors_in, k_s)
        projections[energy] = {
            "projected": projected,
            "k_S": k_s,
            "k_T": k_t,
            "rank": utilized_rank(projected),
            "svd_rank": energy_rank(squared_singular_values, energy),
        }
    return projections


def relative_error(difference_sq: float, reference_sq: float) -> float:
    """‖ΔY‖_F / ‖Y‖_F from the accumulated squares Σ‖Δy_i‖² and Σ‖y_i‖² (NaN if Y = 0)."""
    return math.sqrt(difference_sq / reference_sq) if reference_sq > 0 else math.nan


def output_error_terms(
    weight: torch.Tensor, projected: torch.Tensor, rows: torch.Tensor
) -> tuple[float, float]:
    """Σ_i ‖(W' − W) x_i‖² and Σ_i ‖W x_i‖² over a batch of input rows; summed over batches
    they give the relative output error ‖W'X − WX‖_F / ‖WX‖_F (bias cancels in the difference
    and is left out of the reference, as it is of C_out).
    """
    x = rows.double()
    reference = x @ weight.double().T
    difference = x @ (projected.double() - weight.double()).T
    return float((difference**2).sum()), float((reference**2).sum())


def saves_parameters(rank: int, d_in: int, d_out: int) -> bool:
    """Whether two factors of inner width r are smaller than W: r (d_in + d_out) < d_in d_out."""
    return rank * (d_in + d_out) < d_in * d_out


def low_rank_factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (r × d_in) and B (d_out × r) with B A the best rank-r approximation of the matrix
    (truncated SVD U_r Σ_r V_rᵀ, with √Σ_r on each side); B A = the matrix when its rank ≤ r.
    """
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    root = torch.sqrt(s[:rank])
    return root[:, None] * vh[:rank], u[:, :rank] * root[None, :]


def truncated_svd(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    """The plain rank-r truncation U_r Σ_r V_rᵀ of W (Eckart-Young), the data-blind baseline."""
    a, b = low_rank_factors(matrix, rank)
    return b @ a


def factorize(module: nn.Module, matrix: torch.Tensor, rank: int) -> nn.Sequential:
    """Replace a layer by two layers of inner width r whose product is the best rank-r
    approximation of ``matrix`` (d_out × d_in; W' itself when rank(W') = r, so the pair equals W'
    in function). Linear: Linear(d_in → r, no bias) then Linear(r → d_out, the layer's bias).
    Conv2d: the layer's k×k convolution with r output channels (no bias), then a 1×1
    convolution r → C_out with the layer's bias. Weights r·(d_in + d_out), plus the bias.
    """
    a, b = low_rank_factors(matrix, rank)
    kind = {"dtype": module.weight.dtype, "device": module.weight.device}
    has_bias = module.bias is not None
    if isinstance(module, nn.Conv2d):
        first = nn.Conv2d(
            module.in_channels,
            rank,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            bias=False,
            **kind,
        )
        second = nn.Conv2d(rank, module.out_channels, 1, bias=has_bias, **kind)
        a = a.reshape(rank, *module.weight.shape[1:])
        b = b.reshape(module.out_channels, rank, 1, 1)
    elif isinstance(module, nn.Linear):
        first = nn.Linear(module.in_features, rank, bias=False, **kind)
        second = nn.Linear(rank, module.out_features, bias=has_bias, **kind)
    else:
        raise TypeError(f"cannot factorize a {type(module).__name__}")
    with torch.no_grad():
        first.weight.copy_(a)
        second.weight.copy_(b)
        if has_bias:
            second.bias.copy_(module.bias)
    return nn.Sequential(first, second)


def parameter_count(model: nn.Module) -> int:
    """Number of scalar parameters of a model."""
    return sum(p.numel() for p in model.parameters())
