import pytest
import torch
from rankcollapse.losses import per_sample_loss


def test_cross_entropy_per_sample():
    out = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([0, 1])
    expected = torch.tensor(
        [torch.log(torch.tensor(2.0)), 2 + torch.log1p(torch.exp(torch.tensor(-2.0)))]
    )
    assert torch.allclose(per_sample_loss(out, y, "cross_entropy", 1.0), expected)


def test_mse_is_half_the_squared_distance_to_the_scaled_one_hot_target():
    out = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    # sample 0: ½(1−3)² = 2; sample 1: ½(0−3)² = 4.5
    assert per_sample_loss(out, y, "mse", target_scale=3.0).tolist() == [2.0, 4.5]


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="mse"):
        per_sample_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), "hinge", 1.0)
