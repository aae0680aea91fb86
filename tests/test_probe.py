"""The linear probe: a strictly convex fit that separates what is linearly separable."""

import torch
from factories import images, pretraining_spec
from rankcollapse.models import head, initial_model, representation
from rankcollapse.probe import fit_head, frozen_features
from torch import nn

LOSS = {"loss": "cross_entropy", "target_scale": 1.0}


def separable(n=300, dim=6, classes=4, seed=0):
    """Features whose class is the argmax of a fixed linear map: linearly separable."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, dim, generator=g)
    labels = (features @ torch.randn(dim, classes, generator=g)).argmax(1)
    return features, labels


def test_the_probe_separates_linearly_separable_features():
    features, labels = separable()
    probe = nn.Linear(6, 4)
    iterations, loss, accuracy = fit_head(probe, features, labels, LOSS, 1e-5, 200)
    assert accuracy >= 0.99 and iterations > 0 and loss < 0.2
    with torch.no_grad():
        assert float((probe(features).argmax(1) == labels).float().mean()) == accuracy


def test_the_probe_finds_the_unique_minimiser_from_any_start():
    features, labels = separable(seed=1)
    features, fitted = features.double(), []
    for seed in (0, 1):
        torch.manual_seed(seed)
        probe = nn.Linear(6, 4).double()
        fit_head(probe, features, labels, LOSS, 1e-2, 300)
        fitted.append(torch.cat([probe.weight.detach().flatten(), probe.bias.detach()]))
    assert not torch.equal(fitted[0], fitted[1])
    assert torch.allclose(fitted[0], fitted[1], atol=1e-6)


def test_frozen_features_are_the_head_input_without_gradients():
    spec, data = pretraining_spec(), images()
    model = initial_model(spec["model"], data.in_shape, data.classes, 0)
    features = frozen_features(model, data.train_x, batch=7)
    assert features.shape == (len(data.train_y), head(model).in_features)
    assert not features.requires_grad
    with torch.no_grad():
        assert torch.allclose(features, representation(model, data.train_x), atol=1e-6)
        assert torch.allclose(head(model)(features), model(data.train_x), atol=1e-5)
