"""What every autoencoder here shares: an ``encoder`` and a ``decoder`` module, and the latent's shape."""

from __future__ import annotations

import torch
from torch import nn


class Autoencoder(nn.Module):
    encoder: nn.Module
    decoder: nn.Module
    latent_shape: tuple[int, int, int]  # channels, height, width of the latent for one image

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.encode(images)
        return self.decode(latent), latent
