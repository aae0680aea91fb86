"""The stationarity certificate of a run, and the convergence phase that earns it.

The objective is F(θ) = (1/N) Σ_i ℓ_i(θ) + (λ/2) ‖θ‖². For each measured layer, R_l = ∂F/∂W_l
(zero at a stationary point), and a run with λ > 0 is *certified stationary* at tolerance tol
when max_l ‖R_l‖_F / ‖λW_l‖_F ≤ tol. The condition is a property of F alone, so any optimiser
may be used to reach it: SGD chooses which stationary point is approached, and L-BFGS with a
strong-Wolfe line search then converges to it on the full batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .layers import measured_layers
from .losses import per_sample_loss

TOLERANCE_REACHED = "tolerance reached"
STEPS_SPENT = "step budget spent"
TIME_SPENT = "time budget spent"
NO_PROGRESS = "line search made no progress"
NO_PHASE = "no convergence phase (convergence.steps is 0)"
NO_DECAY = "λ = 0: no stationary point to certify"
DIVERGED = "diverged"


def objective(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: dict, wd: float, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """The full-batch mean loss (1/N) Σ_i ℓ_i and F = mean loss + (λ/2) ‖θ‖², both tensors left
    on the device (no host synchronisation), with ∇F left in each parameter's ``.grad``.
    """
    model.zero_grad(set_to_none=True)
    n = x.shape[0]
    mean_loss = torch.zeros((), dtype=x.dtype, device=x.device)
    for xb, yb in zip(x.split(chunk), y.split(chunk), strict=True):
        batch_loss = per_sample_loss(model(xb), yb, **loss).sum() / n
        batch_loss.backward()
        mean_loss += batch_loss.detach()
    penalty = torch.zeros((), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is None:  # a parameter the loss does not reach
                p.grad = torch.zeros_like(p)
            p.grad += wd * p
            penalty += (p**2).sum()
    return mean_loss, mean_loss + 0.5 * wd * penalty


@dataclass
class Residuals:
    """Where a run stands: the full-batch mean loss, the objective F, ‖∇F‖ over all
    parameters and ‖∇F‖/‖λθ‖, and per measured layer ‖R_l‖_F/‖λW_l‖_F (NaN at λ = 0, where
    they are undefined).
    """

    full_loss: float
    objective: float
    residual: float
    rel_residual: float
    layers: dict[str, float]

    @property
    def worst(self) -> float:
        """max_l ‖R_l‖_F/‖λW_l‖_F, the number the certificate compares with its tolerance."""
        return max(self.layers.values())


def residuals(
    model: nn.Module, mean_loss: torch.Tensor, value: torch.Tensor, wd: float
) -> Residuals:
    """The residuals at the point where :func:`objective` gave ``mean_loss`` and F = ``value``,
    from the gradient it left in ``.grad``, read on the host in one transfer.
    """
    with torch.no_grad():
        params = [p for p in model.parameters() if p.grad is not None]
        grad = torch.sqrt(sum((p.grad**2).sum() for p in params))
        decay = wd * torch.sqrt(sum((p**2).sum() for p in params))
        layers = measured_layers(model)
        per_layer = [m.weight.grad.norm() / (wd * m.weight.norm()) for _, m in layers]
        values = torch.stack([mean_loss, value, grad, grad / decay, *per_layer])
        full_loss, objective_value, residual, relative, *rel_layers = values.tolist()
    if wd == 0:
        relative, rel_layers = float("nan"), [float("nan")] * len(layers)
    names = [name for name, _ in layers]
    rel = dict(zip(names, rel_layers, strict=True))
    return Residuals(full_loss, objective_value, residual, relative, rel)


@dataclass
class Certificate:
    """A run's stationarity certificate, as its metadata and tables carry it."""

    stationary: bool
    tol: float
    rel_residual_max: float
    rel_residual_layers: dict[str, float]
    steps: int
    evaluations: int
    stop_reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def certify(
    last: Residuals | None, wd: float, tol: float, steps: int, evaluations: int, reason: str
) -> Certificate:
    """The certificate of a run whose last record is ``last`` (None: it diverged)."""
    if last is None:
        return Certificate(False, tol, float("nan"), {}, steps, evaluations, DIVERGED)
    stationary = wd > 0 and last.worst <= tol
    return Certificate(stationary, tol, last.worst, last.layers, steps, evaluations, reason)


# Objective evaluations one strong-Wolfe line search may take (torch's default, 25) plus one.
EVALUATIONS_PER_ITERATION = 26


def lbfgs(model: nn.Module, history_size: int) -> torch.optim.LBFGS:
    """L-BFGS with a strong-Wolfe line search. Its own stopping tests are off (tolerances 0):
    the phase stops on the certificate or the budget.
    """
    return torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        history_size=history_size,
        line_search_fn="strong_wolfe",
        tolerance_grad=0.0,
        tolerance_change=0.0,
    )


def set_iterations(optimizer: torch.optim.LBFGS, iterations: int) -> None:
    """Make the next ``step`` do exactly ``iterations`` iterations (fewer only when the line
    search cannot go on): its budget of evaluations is set out of reach.
    """
    group = optimizer.param_groups[0]
    group["max_iter"], group["max_eval"] = iterations, iterations * EVALUATIONS_PER_ITERATION


def _state(optimizer: torch.optim.LBFGS) -> dict:
    return optimizer.state.get(optimizer.param_groups[0]["params"][0], {})


def lbfgs_counts(optimizer: torch.optim.LBFGS) -> tuple[int, int]:
    """Iterations and objective evaluations the optimiser has made so far."""
    state = _state(optimizer)
    return state.get("n_iter", 0), state.get("func_evals", 0)


def last_step(optimizer: torch.optim.LBFGS) -> float:
    """The step length of the last line search."""
    return float(_state(optimizer).get("t", math.nan))
