import pytest
import torch
from rankcollapse.layers import layer_kind, measured_layers, utilized_layers
from rankcollapse.models import build_model, initial_model, mlp

MLP = {"arch": "mlp", "depth": 4, "width": 32, "bias": False, "channels": [4], "activation": "relu"}
CNN = {
    "arch": "cnn",
    "depth": 4,
    "width": 16,
    "bias": False,
    "channels": [4, 6],
    "activation": "relu",
}


def test_mlp_has_depth_linear_layers_without_bias():
    layers = measured_layers(build_model(MLP, (1, 28, 28), 10))
    assert [name for name, _ in layers] == ["layer1", "layer2", "layer3", "layer4"]
    assert [tuple(m.weight.shape) for _, m in layers] == [(32, 784), (32, 32), (32, 32), (10, 32)]
    assert all(m.bias is None for _, m in layers)
    with pytest.raises(ValueError, match="depth"):
        mlp(4, 2, depth=0, width=3, bias=False)


def test_cnn_measures_convolutions_and_linear_layers():
    model = build_model(CNN, (3, 32, 32), 10)
    layers = measured_layers(model)
    shapes = [tuple(m.weight.shape) for _, m in layers]
    assert shapes == [(4, 3, 3, 3), (6, 4, 3, 3), (16, 6 * 8 * 8), (10, 16)]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="image inputs"):
        build_model(CNN, (64,), 10)


VIT = {
    "arch": "vit",
    "depth": 2,
    "width": 24,
    "bias": True,
    "dim": 16,
    "heads": 4,
    "patch_size": 4,
    "pool": "cls",
    "channels": [4],
}


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_shapes_and_measured_layers(pool):
    torch.manual_seed(0)
    model = build_model({**VIT, "pool": pool}, (1, 8, 8), 3)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 3)
    layers = measured_layers(model)
    # patch embedding, 2 blocks × (qkv, proj, fc1, fc2), head
    shapes = [tuple(m.weight.shape) for _, m in layers]
    assert shapes == [(16, 16)] + [(48, 16), (16, 16), (24, 16), (16, 24)] * 2 + [(3, 16)]
    used = utilized_layers(model)
    assert [layer_kind(path, m) for _, path, m in used] == ["qkv", "proj", "fc1", "fc2"] * 2
    assert [name for name, _, _ in used] == [f"layer{i}" for i in range(2, 10)]
    with pytest.raises(ValueError, match="patch_size"):
        build_model({**VIT, "patch_size": 3}, (1, 8, 8), 3)
    with pytest.raises(ValueError, match="multiple of model.heads"):
        build_model({**VIT, "heads": 3}, (1, 8, 8), 3)


@pytest.mark.parametrize("name", ["softplus", "gelu", "silu"])
def test_smooth_activations_replace_relu_in_mlp_and_cnn(name):
    for arch, shape in ((MLP, (1, 8, 8)), (CNN, (1, 8, 8))):
        model = build_model({**arch, "activation": name, "beta": 5.0}, shape, 3)
        kinds = {type(m).__name__ for m in model.modules()}
        assert "ReLU" not in kinds and len(kinds & {"Softplus", "GELU", "SiLU"}) == 1
    softplus = build_model({**MLP, "activation": "softplus", "beta": 5.0}, (4,), 3)[2]
    assert softplus.beta == 5.0


def test_the_initial_model_is_regenerated_from_its_seed():
    first = initial_model(MLP, (6,), 3, seed=4)
    torch.manual_seed(99)
    again = initial_model(MLP, (6,), 3, seed=4)
    other = initial_model(MLP, (6,), 3, seed=5)
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters(), strict=True)
    )
    assert not torch.equal(next(first.parameters()), next(other.parameters()))
