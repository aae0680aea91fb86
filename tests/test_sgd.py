"""The SGD mechanism: schedules, the weight-decay time scale, and what decay alone does."""

import math

import pytest
import torch
from factories import clusters, run_spec
from rankcollapse import sgd
from rankcollapse.layers import measured_layers
from rankcollapse.measures import init_alignment
from rankcollapse.models import initial_model

OPT = {"lr": 0.05, "momentum": 0.9, "schedule": "cosine", "milestones": [], "gamma": 0.1}


def test_learning_rate_schedules():
    opt = {"lr": 1.0, "schedule": "cosine", "milestones": [2, 4], "gamma": 0.1}
    assert sgd.learning_rate(opt, 0, 10, 0) == 1.0
    assert sgd.learning_rate(opt, 5, 10, 0) == pytest.approx(0.5)
    assert sgd.learning_rate({**opt, "schedule": "step"}, 0, 10, 3) == pytest.approx(0.1)
    assert sgd.learning_rate({**opt, "schedule": "step"}, 0, 10, 4) == pytest.approx(0.01)
    assert sgd.learning_rate({**opt, "schedule": "constant"}, 7, 10, 9) == 1.0


def test_decay_exponent_sums_the_schedule():
    """Constant: λ·η·T/(1 − β) exactly; cosine: half of it up to the one step it starts at."""
    constant = {**OPT, "schedule": "constant"}
    assert sgd.decay_exponent(constant, 1e-2, 10, 4) == pytest.approx(1e-2 * 0.05 * 40 / 0.1)
    cosine = sgd.decay_exponent(OPT, 1e-2, 10, 4)
    assert cosine == pytest.approx(1e-2 * 0.05 * (20 + 0.5) / 0.1, rel=1e-9)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_epochs_for_a_decay_horizon_is_the_fewest_that_reach_it(schedule):
    opt = {**OPT, "schedule": schedule, "milestones": [3], "gamma": 0.5, "epochs": 2}
    opt["max_epochs"] = 500
    opt["decay_horizon"] = 5.0
    epochs = sgd.epochs_for(opt, 1e-2, 10)
    assert sgd.decay_exponent(opt, 1e-2, 10, epochs) >= 5.0
    assert sgd.decay_exponent(opt, 1e-2, 10, epochs - 1) < 5.0
    assert 2 < epochs < 500


def test_epochs_for_without_a_horizon_at_zero_decay_or_beyond_the_cap():
    opt = {**OPT, "epochs": 7, "max_epochs": 20, "decay_horizon": None}
    assert sgd.epochs_for(opt, 1e-2, 10) == 7
    assert sgd.epochs_for({**opt, "decay_horizon": 5.0}, 0.0, 10) == 7
    assert sgd.epochs_for({**opt, "decay_horizon": 1e6}, 1e-2, 10) == 20
    assert sgd.epochs_for({**opt, "decay_horizon": 1e-9}, 1e-2, 10) == 7


def test_weight_decay_alone_leaves_the_predicted_share_of_the_initial_matrix():
    """A hidden layer whose data gradient is masked keeps exp(−λ Σ η_t/(1 − β)) of its
    initial matrix (within the momentum's discretisation), and an untrained one all of it.
    """
    data, wd, epochs = clusters(n=40), 0.01, 100
    spec = run_spec(wd=wd, epochs=epochs)
    model = initial_model(spec["model"], data.in_shape, data.classes, 0)
    initial = initial_model(spec["model"], data.in_shape, data.classes, 0)
    (_, masked), (_, start) = measured_layers(model)[1], measured_layers(initial)[1]
    assert init_alignment(masked.weight.detach(), start.weight.detach())["init_share"] == 1.0
    masked.weight.register_hook(torch.zeros_like)
    optimizer = sgd.optimizer(model, OPT["lr"], OPT["momentum"], wd)
    schedule = {**spec["optimizer"], "epochs": epochs}
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        sgd.sgd_epoch(
            model,
            optimizer,
            data,
            sgd.supervised(model, {"loss": "cross_entropy", "target_scale": 1.0}),
            schedule,
            epoch,
            generator,
        )
    steps = math.ceil(len(data.train_y) / schedule["batch_size"])
    predicted = math.exp(-sgd.decay_exponent(schedule, wd, steps, epochs))
    alignment = init_alignment(masked.weight.detach(), start.weight.detach())
    assert predicted < 0.5
    assert alignment["init_share"] == pytest.approx(predicted, rel=0.02)
    assert alignment["init_cosine"] == pytest.approx(1.0, abs=1e-6)
