"""Rank and within-class-variability measures, as defined in docs/science.md.

Spectral measures take the singular values ``s`` of a weight matrix, sorted in
decreasing order (float64). Variability measures take per-class statistics of a
layer's input embeddings, accumulated by :class:`rankcollapse.statistics.EmbeddingStats`.
"""

from __future__ import annotations

import math

import torch

from .config import eps_rank_column


def singular_values(weight: torch.Tensor) -> torch.Tensor:
    """Full spectrum σ_1 ≥ … ≥ σ_min(m,n) of W as a 2-D matrix (a convolution kernel
    flattened per output channel), computed in float64 on W's device.
    """
    return torch.linalg.svdvals(weight.detach().reshape(weight.shape[0], -1).double())


def frobenius_norm(s: torch.Tensor) -> float:
    """||W||_F = (Σ_j σ_j²)^½."""
    return float(torch.sqrt((s**2).sum()))


def eps_rank(s: torch.Tensor, eps: float) -> int:
    """Numerical rank relative to the top singular value: #{j : σ_j > ε σ_1}."""
    return int((s > eps * s[0]).sum()) if s.numel() and s[0] > 0 else 0


def frobenius_rank(s: torch.Tensor, eps: float = 1e-3) -> int:
    """Rank relative to the Frobenius norm (Galanti et al. 2022): #{j : σ_j > ε ||W||_F}."""
    return int((s > eps * frobenius_norm(s)).sum())


def stable_rank(s: torch.Tensor) -> float:
    """Stable rank ||W||_F² / σ_1²."""
    return float((s**2).sum() / s[0] ** 2) if s[0] > 0 else 0.0


def effective_rank(s: torch.Tensor) -> float:
    """Effective rank (Roy & Vetterli 2007): exp(−Σ_j p_j log p_j), p_j = σ_j / Σ_k σ_k."""
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return math.exp(float(-(p * p.log()).sum()))


def tail_norm(s: torch.Tensor, k: int) -> float:
    """Distance of W to the rank-k matrices (Eckart-Young): tail_k = (Σ_{j>k} σ_j²)^½."""
    return float(torch.sqrt((s[k:] ** 2).sum()))


def sigma_ratio(s: torch.Tensor, k: int) -> float:
    """σ_{k+1} / σ_1 (0 when W has at most k singular values)."""
    return float(s[k] / s[0]) if s.numel() > k and s[0] > 0 else 0.0


def init_alignment(weight: torch.Tensor, initial: torch.Tensor) -> dict[str, float]:
    """How much of W is its initial matrix W₀: ``init_share`` = ⟨W, W₀⟩_F / ‖W₀‖_F², the multiple
    of W₀ left in W (1 untrained; weight decay alone leaves exp(−λ Σ_t η_t/(1 − β))), and
    ``init_cosine`` = ⟨W, W₀⟩_F / (‖W‖_F ‖W₀‖_F), the fraction of ‖W‖_F along W₀.
    """
    w, w0 = weight.double().flatten(), initial.double().flatten()
    inner = float(w @ w0)
    return {
        "init_share": inner / float(w0 @ w0),
        "init_cosine": inner / float(w.norm() * w0.norm()) if w.norm() > 0 else float("nan"),
    }


def global_mean(class_means: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """μ_G = (1/N) Σ_c n_c μ_c."""
    return (counts[:, None] * class_means).sum(0) / counts.sum()


def ss_between(class_means: torch.Tensor, counts: torch.Tensor) -> float:
    """Between-class sum of squares SS_B = Σ_c n_c ||μ_c − μ_G||²."""
    centred = class_means - global_mean(class_means, counts)
    return float((counts * (centred**2).sum(1)).sum())


def ss_ratio(ss_within: float, ss_total: float) -> float:
    """Scale-free within-class variability SS_W / SS_total, SS_total = Σ_i ||z_i − μ_G||²."""
    return ss_within / ss_total if ss_total > 0 else float("nan")


def tcv_relative(tcv: float, ss_total: float, rows: float) -> float:
    """Scale-free TCV: TCV / (N_rows · SS_total)^½, the mean within-class distance
    ‖z_i − μ_c(i)‖ over the RMS distance ‖z_i − μ_G‖, N_rows the number of rows. In [0, 1]:
    by Cauchy-Schwarz TCV ≤ (N_rows · SS_W)^½ ≤ (N_rows · SS_total)^½. NaN when SS_total = 0.
    """
    return tcv / math.sqrt(rows * ss_total) if ss_total > 0 else float("nan")


def between_class_covariance(class_means: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Σ_B = (1/K) Σ_c (μ_c − μ_G)(μ_c − μ_G)ᵀ."""
    centred = class_means - global_mean(class_means, counts)
    return centred.T @ centred / class_means.shape[0]


def nc1(within_cov: torch.Tensor, between_cov: torch.Tensor, classes: int) -> float:
    """NC1 = tr(Σ_W Σ_B⁺) / K (Papyan et al. 2020), Σ_W = (1/N) Σ_i (z_i − μ_c)(z_i − μ_c)ᵀ."""
    return float(torch.trace(within_cov @ torch.linalg.pinv(between_cov, hermitian=True))) / classes


def cdnv(class_means: torch.Tensor, ss_per_class: torch.Tensor, counts: torch.Tensor) -> float:
    """Class-distance-normalised variance (Galanti et al. 2022), averaged over pairs c ≠ c':
    (Var_c + Var_c') / (2 ||μ_c − μ_c'||²), Var_c = (1/n_c) Σ_{i∈c} ||z_i − μ_c||².
    """
    var = ss_per_class / counts
    dist2 = torch.cdist(class_means, class_means) ** 2
    k = class_means.shape[0]
    off = ~torch.eye(k, dtype=torch.bool)
    if k < 2:
        return float("nan")
    ratio = (var[:, None] + var[None, :]) / (2 * dist2)
    return float(ratio[off].mean())


def means_rank(class_means: torch.Tensor, counts: torch.Tensor, eps: float = 1e-3) -> int:
    """Numerical rank of the K × d matrix M of centred class means, rows μ_c − μ_G over the
    classes with rows (μ_G their count-weighted mean): #{j : σ_j(M) > ε σ_1(M)}, 0 if M = 0.
    At most K − 1, since Σ_c n_c (μ_c − μ_G) = 0; fewer when the class means span fewer
    directions (Súkeník et al. 2024), where NC1 rises.
    """
    present = counts > 0
    means, n = class_means[present].double(), counts[present].double()
    if not len(n):
        return 0
    return eps_rank(torch.linalg.svdvals(means - global_mean(means, n)), eps)


def between_class_span(class_means: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis V (d × r) of the range of Σ_B: the right singular vectors of the
    centred class means μ_c − μ_G whose eigenvalue of Σ_B is above pinv's cut-off for the
    d × d matrix (d · eps · the largest). tr(Σ_W Σ_B⁺) = tr((Vᵀ Σ_W V)(Vᵀ Σ_B V)⁺), so NC1
    needs Σ_W only in these r ≤ K directions.
    """
    centred = class_means - global_mean(class_means, counts)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    eigenvalues = s**2 / class_means.shape[0]
    cutoff = max(centred.shape[1], 1) * torch.finfo(s.dtype).eps * eigenvalues.max()
    return vh[eigenvalues > cutoff].T


def variability_summary(stats) -> dict[str, float]:
    """TCV, TCV/(N_rows · SS_total)^½, SS_W, SS_total = SS_W + SS_B, SS_W/SS_total, NC1, CDNV
    and the numerical rank of the centred class means of the embeddings a finished
    :class:`rankcollapse.statistics.EmbeddingStats` accumulated; NC1 from Σ_W and Σ_B
    restricted to the range V of Σ_B (Vᵀ Σ_W V, Vᵀ Σ_B V).
    """
    means, counts, span = stats.means.cpu(), stats.counts.cpu(), stats.span.cpu()
    ss_w = float(stats.ss_per_class.sum())
    ss_t = ss_w + ss_between(means, counts)
    within_cov = stats.scatter_in_span.cpu() / counts.sum()
    between_cov = span.T @ between_class_covariance(means, counts) @ span
    return {
        "tcv": float(stats.tcv),
        "tcv_relative": tcv_relative(float(stats.tcv), ss_t, float(counts.sum())),
        "ss_within": ss_w,
        "ss_total": ss_t,
        "ss_ratio": ss_ratio(ss_w, ss_t),
        "nc1": nc1(within_cov, between_cov, stats.classes),
        "cdnv": cdnv(means, stats.ss_per_class.cpu(), counts),
        "means_rank": means_rank(means, counts),
    }


def spectral_summary(s: torch.Tensor, k: int, eps_list: list[float]) -> dict[str, float]:
    """Every spectral measure of one layer, keyed by column name."""
    fro = frobenius_norm(s)
    tail = tail_norm(s, k)
    row = {
        "sigma_1": float(s[0]),
        "frobenius_norm": fro,
        "rank_fro": frobenius_rank(s),
        "stable_rank": stable_rank(s),
        "effective_rank": effective_rank(s),
        "tail_K": tail,
        "rel_tail_K": tail / fro if fro > 0 else float("nan"),
        # Rank ≤ K−1 only where Σ_i δ_i = 0 (a bias whose loss gradient vanishes); with
        # weight decay on the bias, λb = −(1/N) Σ_i δ_i and the bound is rank ≤ K.
        "tail_Km1": tail_norm(s, k - 1),
        "sigma_ratio_K": sigma_ratio(s, k),
    }
    for eps in eps_list:
        row[eps_rank_column(eps)] = eps_rank(s, eps)
    return row


def within_class_error(g: torch.Tensor, d: torch.Tensor, class_means: torch.Tensor) -> torch.Tensor:
    """E = Σ_i δ_i (z_i − μ_c(i))ᵀ = G − Σ_c D_c μ_cᵀ."""
    return g - d.T @ class_means


def stationarity_residual(weight: torch.Tensor, g: torch.Tensor, n: int, wd: float) -> torch.Tensor:
    """R = λW + (1/N) Σ_i δ_i z_iᵀ: the objective's gradient in W, zero where it is stationary."""
    return wd * weight.reshape(weight.shape[0], -1).double() + g / n


def bound_summary(
    weight: torch.Tensor,
    grads,
    class_means: torch.Tensor,
    tcv: float,
    tail: float,
    wd: float,
    n: int,
) -> dict[str, float]:
    """Terms of tail_K(W) ≤ ||E||_F/(Nλ) + ||R||_F/λ and of ||E||_F ≤ max_i||δ_i|| · TCV,
    from the sums G, D_c and max ||δ_i|| a :class:`rankcollapse.statistics.GradientStats`
    accumulated.

    Exact at any point (docs/science.md): λW = −(1/N) Σ_c D_c μ_cᵀ − E/N + R, and the first term has
    rank ≤ K. N = ``n`` is the number of training samples the mean loss averages over.
    ``bound_holds`` is None for λ = 0, where the bound is undefined.
    """
    e_norm = float(torch.linalg.norm(within_class_error(grads.g, grads.d, class_means.to(grads.g))))
    r = stationarity_residual(weight.to(grads.g.device), grads.g, n, wd)
    r_norm = float(torch.linalg.norm(r))
    w_norm = float(torch.linalg.norm(weight.double()))
    row = {
        "n_train": n,
        "delta_max": float(grads.delta_max),
        "e_norm": e_norm,
        "r_norm": r_norm,
        "grad_norm": float(torch.linalg.norm(grads.g)) / n,
        "rel_residual": r_norm / (wd * w_norm) if wd > 0 and w_norm > 0 else float("nan"),
    }
    if wd > 0:
        bound = e_norm / (n * wd) + r_norm / wd
        row.update(
            bound_e=e_norm / (n * wd),
            bound_coarse=float(grads.delta_max) * tcv / (n * wd),
            bound_r=r_norm / wd,
            bound=bound,
            bound_margin=bound - tail,
            # Relative tolerance for float64 round-off in the sums.
            bound_holds=bool(tail <= bound * (1 + 1e-9) + 1e-12),
            tcv_over_wd=tcv / wd,
        )
    else:
        row.update(
            bound_e=float("nan"),
            bound_coarse=float("nan"),
            bound_r=float("nan"),
            bound=float("nan"),
            bound_margin=float("nan"),
            bound_holds=None,
            tcv_over_wd=float("nan"),
        )
    return row


def norm_spread(vectors: torch.Tensor) -> float:
    """NC2 equinorm: std / mean of the row norms ||v_c|| (0 when all norms are equal)."""
    norms = vectors.norm(dim=1)
    return float(norms.std(correction=0) / norms.mean())


def equiangularity(vectors: torch.Tensor) -> tuple[float, float]:
    """NC2 equiangularity of rows v_c: std over c ≠ c' of cos(v_c, v_c'), and the mean of
    |cos(v_c, v_c') + 1/(K−1)|, which is 0 for a simplex equiangular tight frame.
    """
    k = vectors.shape[0]
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    cos = (unit @ unit.T)[~torch.eye(k, dtype=torch.bool)]
    return float(cos.std(correction=0)), float((cos + 1 / (k - 1)).abs().mean())


def self_duality(weight: torch.Tensor, centred_means: torch.Tensor) -> float:
    """NC3: || W/||W||_F − M/||M||_F ||_F, M the K × d matrix of centred class means μ_c − μ_G."""
    w = weight.double()
    return float(
        torch.linalg.norm(
            w / torch.linalg.norm(w) - centred_means / torch.linalg.norm(centred_means)
        )
    )
