"""SimCLR's loss against a direct computation, and pre-training that lowers it."""

import math

import pytest
import torch
from factories import images, pretraining_spec
from rankcollapse.contrastive import nt_xent
from rankcollapse.train import train_run

CPU = torch.device("cpu")


def nt_xent_by_loops(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """The loss written term by term, in float64."""
    z = torch.cat([z1, z2]).double()
    u = [v / v.norm() for v in z]
    b, total = len(z1), 0.0
    for i in range(2 * b):
        positive = (i + b) % (2 * b)
        denominator = sum(
            math.exp(float(u[i] @ u[k]) / temperature) for k in range(2 * b) if k != i
        )
        total += -math.log(math.exp(float(u[i] @ u[positive]) / temperature) / denominator)
    return total / (2 * b)


def test_nt_xent_is_the_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    for temperature in (0.1, 0.5, 2.0):
        value = float(nt_xent(z1.double(), z2.double(), temperature))
        assert math.isclose(value, nt_xent_by_loops(z1, z2, temperature), rel_tol=1e-12)


def test_nt_xent_is_low_when_views_agree_and_ignores_scale():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 4, generator=g)
    agreeing = float(nt_xent(z, 3 * z, 0.5))
    assert agreeing < float(nt_xent(z, torch.randn(8, 4, generator=g), 0.5))
    assert math.isclose(agreeing, float(nt_xent(2 * z, z, 0.5)), rel_tol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_pretraining_lowers_the_contrastive_loss(seed):
    # An MLP: the one-block ViT of pretraining_spec sits at the collapsed loss log(2B − 1) for
    # some seeds, schedules and thread counts, which would make this test a lottery.
    spec = pretraining_spec(epochs=15, seed=seed)
    spec["model"] = {"arch": "mlp", "depth": 3, "width": 32, "bias": False, "activation": "relu"}
    spec["optimizer"].update(lr=0.02, batch_size=16)
    result = train_run(spec, images(n=96), CPU, lambda _: None)
    assert result.status == "finished"
    losses = [r["train_loss"] for r in result.history if r["phase"] == "pretraining"]
    assert len(losses) == 15 and all(math.isfinite(v) for v in losses)
    # by 13-26% over seeds 0-2 on one thread or two; never by less than 8% allowed
    assert sum(losses[-3:]) / 3 < 0.92 * sum(losses[:3]) / 3
