"""Reconstruction: the decoder gives back the first view from its latent (the study's MSE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aeclust.objectives.views import TrainingViews


class ReconstructionObjective(nn.Module):
    """weight × MSE between the first view and its reconstruction; it has no head of its own, the decoder is one."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if weight <= 0:
            raise ValueError(f"reconstruction weight={weight}: expected > 0 (leave the objective out for none)")
        self.weight = weight

    def forward(self, views: TrainingViews) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reconstruction = views.autoencoder.decode(views.latent[: views.count])
        return self.weight * F.mse_loss(reconstruction.float(), views.first_view.float()), {}
