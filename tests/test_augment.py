"""Random views for pre-training: crops inside the image, one per image, and the same views
from the same generator state.
"""

import math

import torch
from factories import images
from rankcollapse.augment import ASPECT_RATIOS, crop_transforms, random_views

CPU = torch.device("cpu")


def test_crops_lie_inside_the_image_with_the_drawn_area_and_aspect():
    theta = crop_transforms(2000, 0.3, torch.Generator().manual_seed(0), CPU)
    w, h, cx, cy = theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]
    assert torch.all(theta[:, 0, 1] == 0) and torch.all(theta[:, 1, 0] == 0)
    assert torch.all(cx.abs() + w <= 1 + 1e-6) and torch.all(cy.abs() + h <= 1 + 1e-6)
    area, aspect = w * h, w / h
    unclipped = (w < 1) & (h < 1)
    assert float(area[unclipped].min()) >= 0.3 - 1e-6 and float(area.max()) <= 1 + 1e-6
    low, high = ASPECT_RATIOS
    assert float(aspect[unclipped].min()) >= low - 1e-6
    assert float(aspect[unclipped].max()) <= high + 1e-6
    # Areas are uniform on [0.3, 1]: their mean is near 0.65 (clipping only shrinks a few).
    assert math.isclose(float(area.mean()), 0.65, abs_tol=0.03)


def test_views_are_one_per_image_and_repeat_with_the_generator():
    x = images(n=16).train_x
    first = random_views(x, 0.3, 0.4, torch.Generator().manual_seed(7))
    again = random_views(x, 0.3, 0.4, torch.Generator().manual_seed(7))
    other = random_views(x, 0.3, 0.4, torch.Generator().manual_seed(8))
    assert first.shape == x.shape and torch.equal(first, again)
    assert not torch.equal(first, other)
    # Two images that are the same get different views.
    twins = random_views(x[:1].expand(8, -1, -1, -1), 0.3, 0.0, torch.Generator().manual_seed(0))
    assert len({tuple(v.flatten().tolist()) for v in twins}) == 8


def test_a_constant_image_stays_constant_under_any_crop():
    constant = torch.full((3, 1, 8, 8), 1.5)
    views = random_views(constant, 0.3, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(views, constant, atol=1e-6)


def test_jitter_changes_contrast_and_brightness_within_its_range():
    # The same draws for an image of zeros and one of ones: b, and c + b.
    zeros, ones = torch.zeros(500, 1, 4, 4), torch.ones(500, 1, 4, 4)
    brightness = random_views(zeros, 1.0, 0.4, torch.Generator().manual_seed(0))[:, 0, 0, 0]
    shifted = random_views(ones, 1.0, 0.4, torch.Generator().manual_seed(0))[:, 0, 0, 0]
    contrast = shifted - brightness
    for drawn in (brightness, contrast - 1):
        assert float(drawn.abs().max()) <= 0.4 + 1e-6 and float(drawn.std()) > 0.15
    assert abs(float(torch.corrcoef(torch.stack([brightness, contrast]))[0, 1])) < 0.15
