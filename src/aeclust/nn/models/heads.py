"""Heads on the latent, and the rotation pretext task they learn from."""

from __future__ import annotations

import torch
from torch import nn

N_ROTATIONS = 4  # 0°, 90°, 180°, 270°


class RotationHead(nn.Module):
    """A linear classifier on the flattened latent that predicts which multiple of 90° the input was turned by."""

    def __init__(self, latent_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_features, N_ROTATIONS)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.linear(latent.flatten(1))


def rotate_batch(
    images: torch.Tensor, generator: torch.Generator, turns: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn each image by a random multiple of 90° (or by the given ``turns``); return the turned images and turns.

    One ``torch.rot90`` per rotation group rather than a Python loop over single images.
    """
    if turns is None:
        turns = torch.randint(0, N_ROTATIONS, (len(images),), generator=generator)
    turns = turns.to(images.device)  # drawn on the CPU, so a seed turns the same images on any device
    rotated = torch.empty_like(images)
    for k in range(N_ROTATIONS):
        chosen = turns == k
        if chosen.any():
            rotated[chosen] = torch.rot90(images[chosen], k, dims=(2, 3))
    return rotated, turns


class ProjectionHead(nn.Module):
    """SimCLR's projection MLP on the pooled latent; the contrastive loss is computed on its output."""

    def __init__(self, in_features: int, hidden: int, out_features: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_features))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.mlp(latent.mean(dim=(2, 3)))
