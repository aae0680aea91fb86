"""A prepared dataset as float tensors on one device, ready for batching by index."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Features:
    """Train and test inputs and labels on one device, and the number of classes K."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def to_features(tensors: dict[str, torch.Tensor], device: torch.device) -> Features:
    """Float features: images (uint8) scaled to [0, 1], then standardised by the training set's
    mean and std, and given a channel axis; real-valued data (synthetic clusters) unchanged.
    """
    train_x, test_x = tensors["train_x"], tensors["test_x"]
    if train_x.dtype == torch.uint8:
        train_x, test_x = train_x.float() / 255, test_x.float() / 255
        mean, std = train_x.mean(), train_x.std()
        train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
        if train_x.ndim == 3:
            train_x, test_x = train_x.unsqueeze(1), test_x.unsqueeze(1)
    classes = int(max(tensors["train_y"].max(), tensors["test_y"].max())) + 1
    return Features(
        train_x.float().to(device),
        tensors["train_y"].long().to(device),
        test_x.float().to(device),
        tensors["test_y"].long().to(device),
        classes,
    )


# Fixed subsets, the same for every run of a dataset.
CALIBRATION_SEED = 0


def calibration_indices(n: int, samples: int) -> torch.Tensor:
    """A fixed random subset of ``samples`` training indices (all of them if fewer)."""
    g = torch.Generator().manual_seed(CALIBRATION_SEED)
    return torch.randperm(n, generator=g)[: min(samples, n)]


def split_test_set(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random split of the test set (seed 0) into a validation half, on which the
    energy search selects, and an evaluation half, on which the search's result is reported.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(CALIBRATION_SEED))
    return order[: n // 2], order[n // 2 :]
