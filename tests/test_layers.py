"""A layer as one matrix on rows of its input: linear, convolution patches, ViT tokens."""

import torch
from rankcollapse.layers import capture, input_rows, measured_layers, output_rows, row_labels
from rankcollapse.models import build_model

CNN = {
    "arch": "cnn",
    "depth": 4,
    "width": 16,
    "bias": False,
    "channels": [4, 6],
    "activation": "relu",
}


def test_conv_rows_are_patches_mapped_by_the_matricised_kernel():
    torch.manual_seed(0)
    conv = build_model(CNN, (3, 8, 8), 2)[0]
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    out = conv(x)
    z_rows, h_rows = input_rows(conv, x), output_rows(conv, out)
    y_rows = row_labels(y, z_rows)
    assert z_rows.shape == (2 * 64, 27) and h_rows.shape == (2 * 64, 4)
    assert y_rows.tolist() == [0] * 64 + [1] * 64
    w = conv.weight.reshape(4, -1)
    assert torch.allclose(z_rows @ w.T, h_rows, atol=1e-5)


def test_token_rows_are_labelled_with_their_sample():
    layer = torch.nn.Linear(6, 5, bias=False)
    z, y = torch.randn(2, 3, 6), torch.tensor([1, 0])
    z_rows, h_rows = input_rows(layer, z), output_rows(layer, layer(z))
    y_rows = row_labels(y, z_rows)
    assert z_rows.shape == (6, 6) and h_rows.shape == (6, 5)
    assert y_rows.tolist() == [1, 1, 1, 0, 0, 0]
    assert torch.allclose(z_rows @ layer.weight.T, h_rows)


def test_tokens_are_samples_of_a_linear_layer():
    layer = torch.nn.Linear(8, 4)
    tokens = torch.randn(5, 7, 8)
    assert input_rows(layer, tokens).shape == (35, 8)


def test_capture_keeps_each_layers_input_and_output_and_removes_its_hooks():
    model = build_model(
        {"arch": "mlp", "depth": 3, "width": 4, "bias": False, "activation": "relu"}, (5,), 2
    )
    layers = measured_layers(model)
    x = torch.randn(3, 5)
    with capture(layers, outputs=True) as (inputs, outputs):
        out = model(x)
    assert torch.equal(inputs["layer1"], x) and torch.equal(outputs["layer3"], out)
    assert torch.equal(outputs["layer1"], x @ layers[0][1].weight.T)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for _, m in layers)
    with capture(layers) as (inputs, outputs):
        model(x)
    assert set(inputs) == {"layer1", "layer2", "layer3"} and outputs == {}
