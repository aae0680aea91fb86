"""Utilized rank (paper B): projection, ranks, factorization, on cases with known answers."""

import math

import pytest
import torch
from rankcollapse.layers import input_rows
from rankcollapse.statistics import SecondMoment
from rankcollapse.utilization import (
    energy_rank,
    factorize,
    output_error_terms,
    parameter_count,
    project_layer,
    project_layer_at,
    relative_error,
    saves_parameters,
    svd_energy_rank,
    truncated_svd,
    utilization,
    utilized_rank,
)


def orthonormal(d: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))
    return q


def subspace_inputs(d_in=20, k=4, n=500, seed=0):
    """n inputs x = U z in a known k-dimensional subspace span(U) of R^d_in."""
    u = orthonormal(d_in, k, seed)
    g = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(n, k, generator=g, dtype=torch.float64)
    return u, z @ u.T


def moment_of(x: torch.Tensor, batch=64) -> torch.Tensor:
    moment = SecondMoment(x.shape[1])
    for rows in x.split(batch):
        moment.add(rows)
    assert moment.count == x.shape[0]
    return moment.matrix


def test_energy_rank_by_hand():
    values = torch.tensor([4.0, 3.0, 2.0, 1.0])
    # partial sums 0.4, 0.7, 0.9, 1.0 of the total
    assert [energy_rank(values, e) for e in (0.3, 0.4, 0.5, 0.7, 0.71, 0.9, 0.95, 1.0)] == [
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
    ]
    assert energy_rank(torch.tensor([5.0, 0.0, 0.0]), 1.0) == 1
    assert energy_rank(torch.zeros(3), 0.9) == 0
    with pytest.raises(ValueError):
        energy_rank(values, 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_energy_thresholds_are_monotone(seed):
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(50, generator=g, dtype=torch.float64) ** 4
    values = values.sort(descending=True).values
    energies = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0]
    ranks = [energy_rank(values, e) for e in energies]
    assert ranks == sorted(ranks) and ranks[-1] == 50
    # and so are every rank of the projection of a layer on correlated data
    w = torch.randn(12, 30, generator=g, dtype=torch.float64)
    x = torch.randn(400, 30, generator=g, dtype=torch.float64) @ torch.diag(values[:30])
    moment = moment_of(x)
    results = [project_layer(w, moment, e) for e in energies]
    for key in ("k_S", "k_T", "rank", "svd_rank"):
        series = [r[key] for r in results]
        assert series == sorted(series), (key, series)
    assert all(r["rank"] <= min(r["k_S"], r["k_T"]) for r in results)


def test_projection_recovers_a_known_input_subspace_and_its_rank():
    u, x = subspace_inputs(d_in=20, k=4)
    w = torch.randn(15, 20, dtype=torch.float64)
    moment = moment_of(x)
    # e = 1: exactly the support of the inputs
    result = project_layer(w, moment, 1.0)
    assert result["k_S"] == 4
    assert result["k_T"] == 4  # W maps the 4-dimensional inputs onto 4 output directions
    assert result["rank"] == 4
    assert utilization(result["rank"], 20, 15) == pytest.approx(4 / 15)
    # the input projector is the projector onto span(U): W' = P_T W U Uᵀ
    p_s = (result["projected"].pinverse() @ result["projected"]).double()
    assert torch.allclose(p_s, u @ u.T, atol=1e-10)
    # a random W is full rank, so plain SVD sees nothing of the data's subspace
    assert result["svd_rank"] == 15
    assert svd_energy_rank(w, 1.0) == 15


def test_projected_layer_reproduces_outputs_on_inputs_of_the_subspace():
    _, x = subspace_inputs(d_in=30, k=5, n=300)
    _, held_out = subspace_inputs(d_in=30, k=5, n=200)  # same subspace, new samples
    w = torch.randn(25, 30, dtype=torch.float64)
    projected = project_layer(w, moment_of(x), 1.0)["projected"]
    assert torch.allclose(held_out @ projected.T, held_out @ w.T, rtol=0, atol=1e-10)
    error = relative_error(*output_error_terms(w, projected, held_out))
    assert error < 1e-12
    # and outside the subspace it does not: the projection removed the rest of W
    other = torch.randn(10, 30, dtype=torch.float64)
    assert relative_error(*output_error_terms(w, projected, other)) > 0.5


@pytest.mark.parametrize("energy", [0.9, 0.95, 0.99])
def test_output_error_within_the_energy_tolerance_on_calibration_inputs(energy):
    # ‖W'X − WX‖ ≤ ‖(I − P_T)WX‖ + ‖W‖₂‖(I − P_S)X‖, and by the choice of k_T and k_S each
    # tail keeps at most a fraction 1 − e of its energy: relative error
    # ≤ √(1 − e) (1 + ‖W‖₂‖X‖_F / ‖WX‖_F) on the calibration inputs.
    g = torch.Generator().manual_seed(3)
    u = orthonormal(40, 12, 4)
    z = torch.randn(1000, 12, generator=g, dtype=torch.float64)
    x = (z * torch.linspace(3, 0.1, 12, dtype=torch.float64)) @ u.T  # uneven energies
    w = torch.randn(30, 40, generator=g, dtype=torch.float64)
    result = project_layer(w, moment_of(x), energy)
    assert result["k_S"] < 12 and result["k_T"] < 12
    error = relative_error(*output_error_terms(w, result["projected"], x))
    spread = torch.linalg.matrix_norm(w, 2) * x.norm() / (x @ w.T).norm()
    assert 0 < error <= math.sqrt(1 - energy) * (1 + float(spread))


def test_utilized_rank_uses_a_float64_relative_tolerance():
    a = torch.randn(50, 3, dtype=torch.float64)
    b = torch.randn(3, 40, dtype=torch.float64)
    assert utilized_rank(a @ b) == 3
    assert utilized_rank(torch.zeros(4, 5)) == 0
    # singular values 1 and 1e-6: both kept (1e-6 > 1e-8), 1e-12 is not
    m = torch.diag(torch.tensor([1.0, 1e-6, 1e-12], dtype=torch.float64))
    assert utilized_rank(m) == 2


def test_truncated_svd_is_the_best_rank_r_approximation():
    w = torch.randn(20, 15, dtype=torch.float64)
    s = torch.linalg.svdvals(w)
    for r in (1, 5, 15):
        wr = truncated_svd(w, r)
        assert torch.linalg.matrix_rank(wr).item() == r
        assert (w - wr).norm() == pytest.approx(float(s[r:].norm()), abs=1e-10)


@pytest.mark.parametrize("bias", [False, True])
def test_factorized_linear_has_the_claimed_parameters_and_equals_w_prime(bias):
    torch.manual_seed(0)
    layer = torch.nn.Linear(30, 25, bias=bias).double()
    _, x = subspace_inputs(d_in=30, k=6, n=300)
    result = project_layer(layer.weight, moment_of(x), 1.0)
    r = result["rank"]
    assert r == 6 and saves_parameters(r, 30, 25)
    pair = factorize(layer, result["projected"], r)
    assert parameter_count(pair) == r * (30 + 25) + (25 if bias else 0)
    assert parameter_count(pair) < parameter_count(layer)
    probe = torch.randn(40, 30, dtype=torch.float64)  # any input, not only the subspace's
    expected = probe @ result["projected"].T + (layer.bias.detach() if bias else 0)
    assert torch.allclose(pair(probe), expected, atol=1e-10)
    # on inputs of the subspace, the pair also equals the original layer
    assert torch.allclose(pair(x), layer(x), atol=1e-10)


def test_factorized_convolution_equals_its_matrix():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=True).double()
    matrix = conv.weight.detach().reshape(8, -1)
    projected = truncated_svd(matrix, 2)
    pair = factorize(conv, projected, 2)
    assert parameter_count(pair) == 2 * (27 + 8) + 8
    images = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    reference = torch.nn.functional.conv2d(
        images, projected.reshape(conv.weight.shape), conv.bias, padding=1
    )
    assert torch.allclose(pair(images), reference, atol=1e-10)
    # the matrix view: rows are patches, y = W x per position
    rows = input_rows(conv, images)
    assert rows.shape == (4 * 36, 27)


def test_saves_parameters_only_below_the_break_even_rank():
    # 100 x 50: break-even r = 5000 / 150 = 33.3
    assert saves_parameters(33, 100, 50)
    assert not saves_parameters(34, 100, 50)


def test_projections_at_several_energies_are_each_the_projection_at_that_energy():
    """One eigendecomposition serves every energy: the results are those of separate calls,
    bitwise, and differ between energies (a check of the loop, not of the formula)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 25, generator=g, dtype=torch.float64) @ torch.diag(
        torch.logspace(0, -3, 25, dtype=torch.float64)
    )
    w = torch.randn(10, 25, generator=g, dtype=torch.float64)
    energies = [0.5, 0.9, 0.99, 1.0]
    together = project_layer_at(w, moment_of(x), energies)
    assert list(together) == energies
    for e in energies:
        alone = project_layer(w, moment_of(x), e)
        assert torch.equal(together[e]["projected"], alone["projected"])
        assert {k: v for k, v in together[e].items() if k != "projected"} == {
            k: v for k, v in alone.items() if k != "projected"
        }
    assert len({together[e]["k_S"] for e in energies}) == len(energies)
