"""Self-supervised pre-training by contrastive learning (SimCLR; Chen et al. 2020): two random
views of each image (:mod:`rankcollapse.augment`) should map to nearby points of a projection of
the network's representation, and away from the views of the other images of the batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from .augment import random_views
from .models import head, representation


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss over the 2B projections of B image pairs. With u_i = z_i/‖z_i‖ for the
    2B rows of [z1; z2], s_ij = u_iᵀu_j / τ and j(i) the other view of row i's image:

        ℓ = (1/2B) Σ_i −log( exp(s_{i,j(i)}) / Σ_{k≠i} exp(s_ik) ).
    """
    b = z1.shape[0]
    u = functional.normalize(torch.cat([z1, z2]), dim=1)
    similarity = u @ u.T / temperature
    self_pairs = torch.eye(2 * b, dtype=torch.bool, device=u.device)
    similarity = similarity.masked_fill(self_pairs, float("-inf"))
    other_view = torch.arange(2 * b, device=u.device).roll(b)
    return functional.cross_entropy(similarity, other_view)


class Pretraining(nn.Module):
    """The network being pre-trained and SimCLR's projection head, a 2-layer MLP
    (d → d, ReLU, d → ``projection_dim``) on its :func:`.models.representation` of width d
    (what the network's head reads); the projection head is dropped after pre-training. One
    module, so that a checkpoint holds both.
    """

    def __init__(self, network: nn.Module, projection_dim: int):
        super().__init__()
        self.network = network
        width = head(network).in_features
        self.projector = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Linear(width, projection_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(representation(self.network, x))


def simclr_objective(net: Pretraining, settings: dict, views: torch.Generator):
    """The batch objective of :func:`.sgd.sgd_epoch` for SimCLR: the :func:`nt_xent` loss of
    two :func:`.augment.random_views` of the batch drawn from ``views`` (the labels unused; no
    accuracy).
    """

    def objective(x: torch.Tensor, _y: torch.Tensor):
        crop, jitter = settings["crop_scale"], settings["jitter"]
        x1, x2 = random_views(x, crop, jitter, views), random_views(x, crop, jitter, views)
        z = net(torch.cat([x1, x2]))
        return nt_xent(*z.chunk(2), settings["temperature"]), None

    return objective
