"""A stack of runs: its SGD update is torch's per run, and a run's numbers do not depend on
what it is stacked with, nor on the thread count (on the CPU).
"""

import pytest
import torch
from factories import clusters
from factories import run_spec as spec
from rankcollapse import convergence, sgd
from rankcollapse.models import initial_model
from rankcollapse.stack import Stack

LOSS = {"loss": "cross_entropy", "target_scale": 1.0}
# (λ, learning rate, momentum) of three runs: momentum and decay both on, each off.
HYPER = [(1e-3, 0.05, 0.9), (3e-2, 0.01, 0.5), (0.0, 0.3, 0.0)]


def models(arch="mlp", seeds=(0, 1, 2), width=16):
    model = spec(arch=arch, width=width)["model"]
    return [initial_model(model, (5,), 3, seed) for seed in seeds]


# Where the runs share all three, the update takes its scalar forms: the same arithmetic.
SHARED = [(1e-3, 0.05, 0.9)] * 3


@pytest.mark.parametrize("hyper", [HYPER, SHARED])
def test_the_stacked_update_is_torchs_sgd_run_by_run_bitwise(hyper):
    torch.manual_seed(0)
    stacked, alone = models(), models()
    stack = Stack(stacked)
    wd, lr, mu = zip(*hyper, strict=True)
    optimizer = sgd.StackedSGD(stack, list(mu), list(wd), [None] * 3)
    references = [
        torch.optim.SGD(m.parameters(), lr=h[1], momentum=h[2], weight_decay=h[0])
        for m, h in zip(alone, hyper, strict=True)
    ]
    shared = lr[0] if len(set(lr)) == 1 else None
    for _ in range(4):
        grads = {name: torch.randn_like(p) for name, p in stack.params.items()}
        optimizer.step(grads, torch.tensor(lr), shared)
        for i, (model, reference) in enumerate(zip(alone, references, strict=True)):
            for name, p in model.named_parameters():
                p.grad = grads[name][i].clone()
            reference.step()
    for model, reference in zip(stacked, alone, strict=True):
        for a, b in zip(model.parameters(), reference.parameters(), strict=True):
            assert torch.equal(a, b)
    # The state a checkpoint keeps is torch's: a fresh torch SGD takes the buffers.
    fresh = torch.optim.SGD(alone[0].parameters(), lr=0.05, momentum=0.9)
    fresh.load_state_dict(optimizer.state_dict(0, 0.05))
    for p, q in zip(alone[0].parameters(), stacked[0].parameters(), strict=True):
        assert torch.equal(
            fresh.state[p]["momentum_buffer"], references[0].state[p]["momentum_buffer"]
        )
        assert q.data_ptr() != p.data_ptr()


def vits(seeds):
    model = {"arch": "vit", "patch_size": 4, "dim": 8, "depth": 1, "heads": 2}
    model |= {"width": 16, "pool": "cls", "bias": True}
    return [initial_model(model, (1, 8, 8), 3, s) for s in seeds]


def wide_mlps(seeds):
    """Wide enough that two threads split its products (and round them differently)."""
    model = spec(width=32)["model"]
    return [initial_model(model, (64,), 10, s) for s in seeds]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("arch", ["mlp", "vit"])
def test_a_runs_gradients_do_not_depend_on_its_stack_or_the_threads(threads, arch):
    make, x = (
        (wide_mlps, torch.randn(3, 32, 64)) if arch == "mlp" else (vits, torch.randn(3, 6, 1, 8, 8))
    )
    y = torch.randint(0, 10 if arch == "mlp" else 3, (3, x.shape[1]))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        stack = Stack(make((0, 1, 2)))
        with stack.computing():
            together, loss3, _ = stack.gradients(x, y, LOSS)
        for i in range(3):
            one = Stack(make((i,)))
            with one.computing():
                alone, loss1, _ = one.gradients(x[i : i + 1], y[i : i + 1], LOSS)
            assert torch.equal(loss1[0], loss3[i])
            for name in together:
                assert torch.equal(alone[name][0], together[name][i]), name
    finally:
        torch.set_num_threads(before)


def test_the_stacked_objective_is_each_runs_full_batch_objective():
    data = clusters()
    stacked, alone = models(), models()
    stack = Stack(stacked)
    wd = torch.tensor([h[0] for h in HYPER])
    mean_loss, value = stack.objective(data.train_x, data.train_y, LOSS, wd)
    for i, model in enumerate(alone):
        loss_i, value_i = convergence.objective(
            model, data.train_x, data.train_y, LOSS, HYPER[i][0]
        )
        assert float(mean_loss[i]) == pytest.approx(float(loss_i), rel=1e-6)
        assert float(value[i]) == pytest.approx(float(value_i), rel=1e-6)
        for p, q in zip(stacked[i].parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)


def test_a_run_that_turns_nan_leaves_the_others_as_they_were():
    stack = Stack(models())
    with torch.no_grad():
        for p in stack.models[1].parameters():
            p.fill_(float("nan"))
    x, y = torch.randn(3, 6, 5), torch.randint(0, 3, (3, 6))
    grads, loss, _ = stack.gradients(x, y, LOSS)
    clean = Stack(models(seeds=(0, 2)))
    grads2, loss2, _ = clean.gradients(x[[0, 2]], y[[0, 2]], LOSS)
    assert torch.isnan(loss[1]) and torch.isfinite(loss[[0, 2]]).all()
    for name in grads:
        assert torch.equal(grads[name][[0, 2]], grads2[name])
