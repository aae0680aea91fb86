"""Each measure against a case computed by hand or in closed form."""

import math

import numpy as np
import pytest
import torch
from factories import stats_of
from rankcollapse import measures as m
from rankcollapse.statistics import GradientStats


def matrix_with_spectrum(singular: list[float], shape=(6, 5), seed=0) -> torch.Tensor:
    """U diag(s) Vᵀ with random orthonormal U, V: a matrix whose spectrum is known exactly."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=g, dtype=torch.float64))
    s = torch.zeros(shape, dtype=torch.float64)
    s[range(len(singular)), range(len(singular))] = torch.tensor(singular, dtype=torch.float64)
    return u @ s @ v.T


SPECTRUM = [4.0, 2.0, 1.0, 0.01, 0.0]


@pytest.fixture
def s():
    return m.singular_values(matrix_with_spectrum(SPECTRUM))


def test_singular_values_recover_the_built_spectrum(s):
    assert s.dtype == torch.float64
    assert torch.allclose(s, torch.tensor(SPECTRUM, dtype=torch.float64), atol=1e-12)


def test_singular_values_of_a_conv_kernel_use_the_matricised_weight():
    w = torch.randn(4, 3, 2, 2)
    assert m.singular_values(w).shape == (4,)


def test_eps_rank_counts_values_above_eps_times_sigma1(s):
    assert m.eps_rank(s, 0.1) == 3  # 4, 2, 1 > 0.4
    assert m.eps_rank(s, 0.3) == 2  # 1 < 1.2
    assert m.eps_rank(s, 1e-3) == 4  # 0.01 > 0.004
    assert m.eps_rank(torch.zeros(3, dtype=torch.float64), 0.1) == 0


def test_frobenius_rank_uses_the_frobenius_norm(s):
    fro = math.sqrt(16 + 4 + 1 + 1e-4)
    assert m.frobenius_norm(s) == pytest.approx(fro)
    assert m.frobenius_rank(s) == 4  # 0.01 > 1e-3 * 4.58
    assert m.frobenius_rank(s, eps=0.01) == 3  # 0.01 < 0.0458


def test_stable_and_effective_rank_in_closed_form(s):
    assert m.stable_rank(s) == pytest.approx((16 + 4 + 1 + 1e-4) / 16)
    p = torch.tensor(SPECTRUM[:4], dtype=torch.float64) / sum(SPECTRUM)
    assert m.effective_rank(s) == pytest.approx(math.exp(-float((p * p.log()).sum())))
    # k equal singular values: effective rank and stable rank are both exactly k.
    flat = torch.ones(7, dtype=torch.float64)
    assert m.effective_rank(flat) == pytest.approx(7)
    assert m.stable_rank(flat) == pytest.approx(7)


def test_tail_norm_is_the_distance_to_rank_k_matrices(s):
    assert m.tail_norm(s, 2) == pytest.approx(math.sqrt(1 + 1e-4))
    assert m.tail_norm(s, 5) == 0
    w = matrix_with_spectrum(SPECTRUM)
    u, sv, vh = torch.linalg.svd(w, full_matrices=False)
    best_rank2 = u[:, :2] @ torch.diag(sv[:2]) @ vh[:2]
    assert m.tail_norm(s, 2) == pytest.approx(float(torch.linalg.norm(w - best_rank2)))
    assert m.sigma_ratio(s, 2) == pytest.approx(1 / 4)
    assert m.sigma_ratio(s, 5) == 0


def test_collapsed_features_have_zero_variability():
    means = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    stats = stats_of(means[y], y, 3)
    assert stats["tcv"] == pytest.approx(0, abs=1e-12)
    assert stats["ss_within"] == pytest.approx(0, abs=1e-12)
    assert stats["nc1"] == pytest.approx(0, abs=1e-12)
    assert stats["cdnv"] == pytest.approx(0, abs=1e-12)
    assert stats["ss_total"] > 0


def test_two_class_example_by_hand():
    # Class 0: (0,0), (2,0) -> mean (1,0), distances 1, 1.  Class 1: (0,4), (0,6), (0,8) ->
    # mean (0,6), distances 2, 0, 2.
    z = torch.tensor([[0.0, 0.0], [0.0, 4.0], [2.0, 0.0], [0.0, 6.0], [0.0, 8.0]])
    y = torch.tensor([0, 1, 0, 1, 1])
    stats = stats_of(z, y, 2, batch=2)
    assert stats["tcv"] == pytest.approx(1 + 1 + 2 + 0 + 2)
    assert stats["ss_within"] == pytest.approx(1 + 1 + 4 + 0 + 4)
    # Global mean (2/5, 18/5); SS_B = 2 |(1,0)-μ_G|² + 3 |(0,6)-μ_G|².
    mu_g = torch.tensor([0.4, 3.6])
    ss_b = 2 * float(((torch.tensor([1.0, 0.0]) - mu_g) ** 2).sum()) + 3 * float(
        ((torch.tensor([0.0, 6.0]) - mu_g) ** 2).sum()
    )
    assert stats["ss_total"] == pytest.approx(10 + ss_b)
    assert stats["ss_total"] == pytest.approx(float(((z - z.mean(0)) ** 2).sum()))
    assert stats["ss_ratio"] == pytest.approx(10 / (10 + ss_b))
    # CDNV: Var_0 = 1, Var_1 = 8/3, ||μ_0 − μ_1||² = 37.
    assert stats["cdnv"] == pytest.approx((1 + 8 / 3) / (2 * 37))
    # NC1: Σ_W = S_W / 5 with S_W = [[2, 0], [0, 8]]; Σ_B = (1/2) Σ_c d_c d_cᵀ.
    sigma_w = torch.tensor([[2.0, 0.0], [0.0, 8.0]], dtype=torch.float64) / 5
    d = torch.tensor([[1.0, 0.0], [0.0, 6.0]], dtype=torch.float64) - mu_g.double()
    sigma_b = d.T @ d / 2
    expected = float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b))) / 2
    assert stats["nc1"] == pytest.approx(expected)


@pytest.mark.parametrize("classes, dim", [(4, 30), (10, 784), (5, 3)])
def test_nc1_on_the_span_of_the_class_means_equals_the_full_formula(classes, dim):
    # Anisotropic within-class noise, unequal class sizes; d > K, d ≫ K, and d < K.
    g = torch.Generator().manual_seed(classes + dim)
    y = torch.cat([torch.arange(classes), torch.randint(0, classes, (400,), generator=g)])
    scales = torch.rand(dim, generator=g, dtype=torch.float64) * 3
    means = torch.randn(classes, dim, generator=g, dtype=torch.float64)
    z = means[y] + torch.randn(len(y), dim, generator=g, dtype=torch.float64) * scales
    counts = torch.bincount(y, minlength=classes).double()
    class_means = torch.stack([z[y == c].mean(0) for c in range(classes)])
    centred = z - class_means[y]
    full = m.nc1(
        centred.T @ centred / len(y), m.between_class_covariance(class_means, counts), classes
    )
    assert stats_of(z, y, classes, batch=64)["nc1"] == pytest.approx(full, rel=1e-9)


def noisy_classes(means: np.ndarray, rows: int = 300, noise: float = 0.5, seed: int = 0):
    """Rows z_i = μ_y(i) + noise, every class present; as float64 tensors z, y."""
    rng = np.random.default_rng(seed)
    k, dim = means.shape
    y = np.concatenate([np.arange(k), rng.integers(0, k, rows - k)])
    z = means[y] + noise * rng.standard_normal((rows, dim))
    return torch.from_numpy(z), torch.from_numpy(y)


def numpy_tcv_relative(z: np.ndarray, y: np.ndarray) -> float:
    """Mean ‖z_i − μ_c(i)‖ over the RMS ‖z_i − μ_G‖, straight from the rows."""
    class_means = {c: z[y == c].mean(0) for c in np.unique(y)}
    within = np.linalg.norm(z - np.stack([class_means[c] for c in y]), axis=1)
    total = np.linalg.norm(z - z.mean(0), axis=1)
    return within.mean() / np.sqrt((total**2).mean())


def numpy_means_rank(z: np.ndarray, y: np.ndarray) -> int:
    """Rank of the centred class means, by numpy's SVD at the cut-off 10⁻³ σ_1."""
    centred = np.stack([z[y == c].mean(0) for c in np.unique(y)]) - z.mean(0)
    s = np.linalg.svd(centred, compute_uv=False)
    return int((s > 1e-3 * s[0]).sum())


@pytest.mark.parametrize("noise", [0.1, 1.0, 10.0])
def test_tcv_relative_matches_numpy_and_lies_in_the_unit_interval(noise):
    rng = np.random.default_rng(1)
    z, y = noisy_classes(3 * rng.standard_normal((4, 6)), noise=noise)
    stats = stats_of(z, y, 4, batch=32)
    expected = numpy_tcv_relative(z.numpy(), y.numpy())
    assert stats["tcv_relative"] == pytest.approx(expected, rel=1e-10)
    assert stats["tcv_relative"] == pytest.approx(
        stats["tcv"] / math.sqrt(len(y) * stats["ss_total"]), rel=1e-12
    )
    assert 0 < stats["tcv_relative"] <= math.sqrt(stats["ss_ratio"]) <= 1


def test_tcv_relative_is_free_of_scale_and_zero_when_collapsed():
    rng = np.random.default_rng(2)
    z, y = noisy_classes(rng.standard_normal((3, 5)))
    base = stats_of(z, y, 3, batch=50)["tcv_relative"]
    for scale in (1e-3, 7.0, 1e4):
        assert stats_of(scale * z, y, 3, batch=50)["tcv_relative"] == pytest.approx(base, rel=1e-9)
    # every row at its class mean: TCV = 0 while SS_total > 0
    means = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    assert stats_of(means[labels], labels, 3)["tcv_relative"] == pytest.approx(0, abs=1e-12)
    # all rows equal: SS_total = 0, undefined
    assert math.isnan(stats_of(torch.ones(6, 2), labels, 3)["tcv_relative"])
    assert math.isnan(m.tcv_relative(0.0, 0.0, 6))


def test_means_rank_of_collinear_random_and_coincident_class_means():
    rng = np.random.default_rng(3)
    k, dim = 5, 12
    direction = rng.standard_normal(dim)
    on_a_line = np.outer(rng.standard_normal(k), direction) + rng.standard_normal(dim)
    z, y = noisy_classes(on_a_line, rows=20 * k, noise=0.0)
    assert stats_of(z, y, k, batch=16)["means_rank"] == numpy_means_rank(z.numpy(), y.numpy()) == 1
    # random means in d > K: K − 1, the most centred means can span
    z, y = noisy_classes(rng.standard_normal((k, dim)), rows=400, noise=0.5)
    assert stats_of(z, y, k, batch=64)["means_rank"] == numpy_means_rank(z.numpy(), y.numpy())
    assert stats_of(z, y, k, batch=64)["means_rank"] == k - 1
    # four classes, two of them with the same mean: the centred means span 2 directions, not 3
    means = rng.standard_normal((4, dim))
    means[3] = means[2]
    z, y = noisy_classes(means, rows=4 * 2000, noise=0.0)
    assert stats_of(z, y, 4, batch=500)["means_rank"] == 2
    # every class mean equal: M = 0
    assert m.means_rank(torch.ones(3, 4, dtype=torch.float64), torch.ones(3)) == 0


def test_means_rank_leaves_out_classes_without_rows():
    means = torch.tensor(
        [[1.0, 0.0, 0.0], [float("nan")] * 3, [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    counts = torch.tensor([2.0, 0.0, 3.0, 1.0], dtype=torch.float64)
    assert m.means_rank(means, counts) == 2  # three present classes: K − 1 = 2
    assert m.means_rank(means, torch.tensor([0.0, 0.0, 1.0, 0.0])) == 0
    assert m.means_rank(means[:0], counts[:0]) == 0


def test_between_class_span_drops_the_directions_the_means_do_not_reach():
    # Two classes: the centred means are collinear, so Σ_B has rank 1 in R^3.
    means = torch.tensor([[1.0, 2.0, 0.0], [3.0, -1.0, 0.0]], dtype=torch.float64)
    span = m.between_class_span(means, torch.tensor([3.0, 5.0], dtype=torch.float64))
    assert span.shape == (3, 1)
    direction = (means[0] - means[1]) / (means[0] - means[1]).norm()
    assert float(abs(span[:, 0] @ direction)) == pytest.approx(1)


def test_spectral_summary_names_every_eps_column(s):
    row = m.spectral_summary(s, k=2, eps_list=[0.1, 0.001])
    assert row["rank_eps_0.1"] == 3 and row["rank_eps_0.001"] == 4
    assert row["tail_K"] == pytest.approx(math.sqrt(1 + 1e-4))
    assert row["rel_tail_K"] == pytest.approx(row["tail_K"] / row["frobenius_norm"])


def test_gradient_stats_and_within_class_error_by_hand():
    # Two samples of class 0 with inputs z = (1, 0), (3, 0) (mean (2, 0)) and errors δ = 1, −1.
    acc = GradientStats(classes=1, d_in=2, d_out=1)
    acc.add(
        torch.tensor([[1.0], [-1.0]]), torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.tensor([0, 0])
    )
    assert acc.g.tolist() == [[1 * 1 - 1 * 3, 0.0]]  # Σ δ zᵀ = (−2, 0)
    assert acc.d.tolist() == [[0.0]]
    e = m.within_class_error(acc.g, acc.d, torch.tensor([[2.0, 0.0]], dtype=torch.float64))
    assert e.tolist() == [[1 * (1 - 2) - 1 * (3 - 2), 0.0]]  # Σ δ (z − μ)ᵀ = (−2, 0)
    assert float(acc.delta_max) == 1.0
    r = m.stationarity_residual(torch.tensor([[4.0, 1.0]]), acc.g, 2, wd=0.5)
    assert r.tolist() == [[0.5 * 4 - 1.0, 0.5]]


def test_simplex_etf_has_perfect_nc2_and_nc3():
    k = 4
    etf = torch.eye(k, dtype=torch.float64) - 1 / k  # centred one-hot vectors: a simplex ETF
    assert m.norm_spread(etf) == pytest.approx(0, abs=1e-12)
    std_cos, max_angle = m.equiangularity(etf)
    assert std_cos == pytest.approx(0, abs=1e-12) and max_angle == pytest.approx(0, abs=1e-12)
    assert m.self_duality(3 * etf, etf) == pytest.approx(0, abs=1e-12)
    assert m.self_duality(-etf, etf) == pytest.approx(2, abs=1e-12)
    skewed = etf.clone()
    skewed[0] *= 2
    assert m.norm_spread(skewed) > 0.3
