"""Rotation self-supervision (Gidaris et al., 2018): a linear head on the latent tells which multiple of 90° each
image was turned by."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aeclust.nn.models import RotationHead, rotate_batch
from aeclust.nn.objectives.views import TrainingViews, channels_last


class RotationObjective(nn.Module):
    """weight × cross-entropy of the head's guess of each image's turn.

    When the step's views were turned (the study's step, or contrastive views with ``rotate_views``) the head
    reads their latents; otherwise the batch is turned and encoded here, one more encoder pass, resized first to
    ``size``×``size`` pixels when ``size`` is set.
    """

    def __init__(self, latent_features: int, weight: float = 10.0, size: int = 0) -> None:
        super().__init__()
        self.head = RotationHead(latent_features)
        self.weight = weight
        self.size = size

    def forward(self, views: TrainingViews) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if views.turns is None:
            images = views.images
            if self.size and images.shape[-1] != self.size:
                # Antialiased, so the smaller image keeps what a larger one shows instead of aliasing fine detail.
                images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True)
            rotated, turns = rotate_batch(images, views.generator)
            latent = views.autoencoder.encode(channels_last(rotated))
        else:
            latent, turns = views.latent, views.turns
        logits = self.head(latent).float()
        loss = self.weight * F.cross_entropy(logits, turns)
        # Counted per image of the batch, so an epoch's rotation accuracy stays a share of images; left on the device
        # (read once an epoch), so a GPU need not wait at every step.
        correct = (logits.detach().argmax(1) == turns).sum() * views.count / len(turns)
        return loss, {"rotation_correct": correct}
