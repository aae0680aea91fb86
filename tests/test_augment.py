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


def test_the_whole_image_without_jitter_is_the_image():
    # min_scale 1 and a drawn aspect of exactly 1 are not forced, so test the resampling
    # itself: an identity crop reproduces the pixels, and a constant image stays constant.
    x = images(n=4).train_x
    constant = torch.full((3, 1, 8, 8), 1.5)
    views = random_views(constant, 0.3, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(views, constant, atol=1e-6)
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(4, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    same = torch.nn.functional.grid_sample(x, grid, align_corners=False, padding_mode="border")
    assert torch.allclose(same, x, atol=1e-5)


def test_jitter_changes_contrast_and_brightness_within_its_range():
    constant = torch.zeros(500, 1, 4, 4)
    views = random_views(constant, 1.0, 0.4, torch.Generator().manual_seed(0))
    brightness = views[:, 0, 0, 0]
    assert torch.all(views == brightness[:, None, None, None])  # c·0 + b everywhere
    assert float(brightness.abs().max()) <= 0.4 and float(brightness.std()) > 0.1
