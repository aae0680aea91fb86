"""Random views of images for self-supervised pre-training: each image of a batch gets its own
random resized crop and intensity change, drawn from the run's generator and applied to the
whole batch by one resampling call, on the batch's device.

torchvision's transforms draw one set of parameters per call, so a batched call would give
every image the same crop; contrastive learning needs a different one per image.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional

# SimCLR's range of crop aspect ratios (width / height).
ASPECT_RATIOS = (3 / 4, 4 / 3)


def crop_transforms(
    batch: int, min_scale: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Per image the affine map (batch × 2 × 3) from output coordinates in [−1, 1]² to the input
    coordinates of a random crop: area fraction s ~ U(min_scale, 1), aspect a with log a ~
    U(log 3/4, log 4/3), side lengths w = min(1, √(s·a)), h = min(1, √(s/a)) in units of the
    image's side, centre (c_x, c_y) ~ U(−(1 − w), 1 − w) × U(−(1 − h), 1 − h), so that the crop
    lies inside the image: x_in = w·x_out + c_x, y_in = h·y_out + c_y.
    """
    u = torch.rand(batch, 4, generator=generator, device=device, dtype=torch.float32)
    scale = min_scale + (1 - min_scale) * u[:, 0]
    low, high = (math.log(r) for r in ASPECT_RATIOS)
    aspect = torch.exp(low + (high - low) * u[:, 1])
    w = torch.sqrt(scale * aspect).clamp(max=1)
    h = torch.sqrt(scale / aspect).clamp(max=1)
    cx = (2 * u[:, 2] - 1) * (1 - w)
    cy = (2 * u[:, 3] - 1) * (1 - h)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    return theta


def random_views(
    x: torch.Tensor, min_scale: float, jitter: float, generator: torch.Generator
) -> torch.Tensor:
    """A random view of each image of ``x`` (B × C × H × W): the crop of
    :func:`crop_transforms` resized back to H × W (bilinear), then x′ = c·x + b with contrast
    c ~ U(1 − jitter, 1 + jitter) and brightness b ~ U(−jitter, jitter) per image, in the
    standardised units of the inputs. Deterministic given the generator's state.
    """
    batch = x.shape[0]
    theta = crop_transforms(batch, min_scale, generator, x.device).to(x.dtype)
    grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
    views = functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    u = torch.rand(batch, 2, 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)
    contrast, brightness = 1 + jitter * (2 * u[:, 0] - 1), jitter * (2 * u[:, 1] - 1)
    return contrast * views + brightness
