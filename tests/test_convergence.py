"""The convergence phase and the stationarity certificate, on tiny problems on the CPU."""

import pytest
import torch
from factories import clusters, run_spec
from rankcollapse import convergence
from rankcollapse.features import Features
from rankcollapse.layers import measured_layers
from rankcollapse.losses import per_sample_loss
from rankcollapse.measure import measure_run
from rankcollapse.models import initial_model
from rankcollapse.train import train_run

CPU = torch.device("cpu")
CE = {"loss": "cross_entropy", "target_scale": 1.0}


def in_float64(data: Features) -> Features:
    return Features(
        data.train_x.double(), data.train_y, data.test_x.double(), data.test_y, data.classes
    )


def test_objective_is_the_regularised_mean_loss_and_its_gradient():
    """F and ∇F against one autograd pass over an explicitly written F, in float64."""
    data, wd = in_float64(clusters()), 0.03
    model = initial_model(run_spec()["model"], data.in_shape, data.classes, 0).double()
    mean_loss, value = convergence.objective(model, data.train_x, data.train_y, CE, wd, chunk=7)
    gradient = [p.grad.clone() for p in model.parameters()]
    params = list(model.parameters())
    explicit = torch.nn.functional.cross_entropy(
        model(data.train_x), data.train_y
    ) + 0.5 * wd * sum((p**2).sum() for p in params)
    expected = torch.autograd.grad(explicit, params)
    assert float(value) == pytest.approx(float(explicit.detach()), rel=1e-12)
    assert float(mean_loss) == pytest.approx(
        float(value) - 0.5 * wd * sum(float((p.detach() ** 2).sum()) for p in params), rel=1e-12
    )
    for got, want in zip(gradient, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    now = convergence.residuals(model, mean_loss, value, wd)
    for (name, layer), want in zip(measured_layers(model), expected, strict=True):
        ratio = float(want.norm() / (wd * layer.weight.detach().norm()))
        assert now.layers[name] == pytest.approx(ratio, rel=1e-10)
    assert now.worst == max(now.layers.values())


def test_a_smooth_network_is_certified_and_its_bound_is_the_variability_term():
    """Softplus: the residual falls to 1e-6 and the bound's residual part ‖R‖/λ becomes
    negligible against ‖E‖/(Nλ), so the rank bound is the theorem's, not the residual's.
    """
    data, wd = clusters(n=60), 1e-2
    spec = run_spec(wd=wd, epochs=20, activation="softplus", convergence={"steps": 2000}, tol=1e-6)
    result = train_run(spec, data, CPU, log=lambda _: None)
    certificate = result.certificate
    assert certificate.stationary and certificate.stop_reason == convergence.TOLERANCE_REACHED
    assert certificate.rel_residual_max <= 1e-6 and 0 < certificate.steps < 2000
    assert [row["phase"] for row in result.history][-1] == "convergence"
    assert all(p.dtype == torch.float64 for p in result.model.parameters())
    rows, _ = measure_run(result.model.eval(), in_float64(data), [0.1], 30, wd, CE)
    for row in rows:
        assert row["rel_residual"] == pytest.approx(
            certificate.rel_residual_layers[row["layer"]], rel=1e-3, abs=1e-9
        )
        assert row["bound_r"] <= 1e-4 * row["bound_e"]
        assert row["tail_K"] <= row["bound_e"] * (1 + 1e-4)


def test_relu_stalls_and_is_finished_and_measured_but_not_certified():
    data, wd = clusters(n=60), 1e-2
    spec = run_spec(wd=wd, epochs=20, convergence={"steps": 300}, tol=1e-6)
    result = train_run(spec, data, CPU, log=lambda _: None)
    certificate = result.certificate
    assert result.status == "finished" and not certificate.stationary
    assert certificate.rel_residual_max > 1e-6
    assert certificate.stop_reason in (convergence.NO_PROGRESS, convergence.STEPS_SPENT)
    rows, _ = measure_run(result.model.eval(), in_float64(data), [0.1], 30, wd, CE)
    assert len(rows) == 3 and all(row["rel_residual"] > 0 for row in rows)


def test_without_weight_decay_or_phase_nothing_is_certified():
    data = clusters()
    none = train_run(run_spec(wd=0.0, convergence={"steps": 50}), data, CPU, lambda _: None)
    assert not none.certificate.stationary
    assert none.certificate.stop_reason == convergence.NO_DECAY and none.certificate.steps == 0
    off = train_run(run_spec(wd=1e-2), data, CPU, lambda _: None)
    assert off.certificate.stop_reason == convergence.NO_PHASE and not off.certificate.stationary
    # Without the phase the weights stay in SGD's float32.
    assert all(p.dtype == torch.float32 for p in off.model.parameters())


def test_a_run_already_within_tolerance_takes_no_iteration():
    after_sgd = train_run(run_spec(wd=1e-2), clusters(), CPU, lambda _: None).certificate
    tol = after_sgd.rel_residual_max * 1.01
    spec = run_spec(wd=1e-2, convergence={"steps": 50}, tol=tol)
    result = train_run(spec, clusters(), CPU, lambda _: None)
    assert result.certificate.steps == 0 and result.certificate.stationary
    assert result.certificate.stop_reason == convergence.TOLERANCE_REACHED


def test_a_diverged_run_has_no_certificate():
    bad = run_spec(convergence={"steps": 50})
    bad["optimizer"]["lr"] = 1e12
    result = train_run(bad, clusters(), CPU, log=lambda _: None)
    assert result.status == "diverged"
    assert result.certificate.stop_reason == convergence.DIVERGED
    assert not result.certificate.stationary


def test_per_sample_losses_of_a_float64_model():
    """The phase's precision reaches the loss: no silent cast back to float32."""
    data = in_float64(clusters())
    model = initial_model(run_spec()["model"], data.in_shape, data.classes, 0).double()
    assert per_sample_loss(model(data.train_x), data.train_y, **CE).dtype == torch.float64


def test_with_biases_a_stationary_point_keeps_rank_k_not_k_minus_1():
    """With weight decay on the biases, stationarity in b is λb = −(1/N) Σ_i δ_i, so the
    class terms Σ_c D_c = Σ_i δ_i do not cancel (the rank-(K − 1) case needs them to) unless
    b = 0: a hidden layer keeps rank K, and tail_Km1 stays far above tail_K.
    """
    data, wd = clusters(n=60), 1e-2
    spec = run_spec(wd=wd, epochs=20, activation="softplus", convergence={"steps": 2000}, tol=1e-5)
    spec["model"]["bias"] = True
    result = train_run(spec, data, CPU, log=lambda _: None)
    assert result.certificate.stationary
    data, model = in_float64(data), result.model.eval()
    layers = measured_layers(model)
    outputs = {}
    hooks = [
        m.register_forward_hook(lambda _m, _a, o, n=n: outputs.__setitem__(n, o)) for n, m in layers
    ]
    losses = per_sample_loss(model(data.train_x), data.train_y, **CE)
    for hook in hooks:
        hook.remove()
    deltas = torch.autograd.grad(losses.sum(), [outputs[n] for n, _ in layers])
    rows, _ = measure_run(model, data, [0.1], 30, wd, CE)
    for (_, layer), delta, row in zip(layers[:-1], deltas, rows, strict=False):
        decay = wd * layer.bias.detach()
        mean_delta = delta.sum(0) / len(data.train_y)
        # The bias condition holds (to 4e-6 here) with b far from 0: Σ_i δ_i = −Nλb ≠ 0.
        assert float((decay + mean_delta).norm()) <= 1e-4 * float(decay.norm())
        assert float(decay.norm()) > 1e-3 * float(layer.weight.detach().norm()) * wd
        assert row["tail_Km1"] > 1000 * row["tail_K"]
