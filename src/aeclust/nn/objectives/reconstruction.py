"""Reconstruction: the decoder gives back the first view from its latent (the study's MSE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aeclust.nn.objectives.views import TrainingViews


class ReconstructionObjective(nn.Module):
    """weight × MSE between the first view and its reconstruction, for the first ``share`` of the batch (batches are
    drawn in random order, so that is a random part of it); it has no head of its own, the decoder is one."""

    def __init__(self, weight: float = 1.0, share: float = 1.0) -> None:
        super().__init__()
        if weight <= 0:
            raise ValueError(f"reconstruction weight={weight}: expected > 0 (leave the objective out for none)")
        if not 0 < share <= 1:
            raise ValueError(f"reconstruction share={share}: expected a share of the batch above 0 and at most 1")
        self.weight, self.share = weight, share

    def forward(self, views: TrainingViews) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        kept = max(1, round(self.share * views.count))
        reconstruction = views.autoencoder.decode(views.latent[:kept])
        return self.weight * F.mse_loss(reconstruction.float(), views.first_view[:kept].float()), {}
