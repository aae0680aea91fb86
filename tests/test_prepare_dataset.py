"""Preparing a dataset: random subsets of the real sets."""

import pytest
import torch
from factories import small_dataset
from rankcollapse.prepare_dataset import subset


def test_subset_sizes_and_determinism():
    tensors = small_dataset()
    first = subset(tensors, 4, 3, seed=1)
    assert first["train_x"].shape == (4, 1) and first["test_y"].shape == (3,)
    assert torch.equal(first["train_x"].squeeze(1).long(), first["train_y"])  # rows stay paired
    assert torch.equal(first["train_y"], subset(tensors, 4, 3, seed=1)["train_y"])
    draws = {tuple(subset(tensors, 4, 3, seed=s)["train_y"].tolist()) for s in range(5)}
    assert len(draws) > 1
    whole = subset(tensors, None, None, seed=1)
    assert all(torch.equal(whole[k], tensors[k]) for k in tensors)


def test_subset_too_large_raises():
    with pytest.raises(ValueError, match="train_size=11"):
        subset(small_dataset(), 11, None, seed=0)
    with pytest.raises(ValueError, match="test_size=7"):
        subset(small_dataset(), None, 7, seed=0)
