"""What one training step's self-supervised objectives all read: the views of a batch and their latents."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aeclust.config import ModelConfig
from aeclust.nn.augment import contrastive_view, random_flip
from aeclust.nn.models import rotate_batch


@dataclass
class TrainingViews:
    """A batch of ``n`` images, the views of it the encoder read together, and what it made of them."""

    images: torch.Tensor  # the batch as drawn (mirrored if the run flips): n images
    first_view: torch.Tensor  # the first view of each image, which the decoder must give back
    inputs: torch.Tensor  # what the encoder read for ``latent``: every view of the batch, one after another
    latent: torch.Tensor  # the encoder's output for every view: n rows per view
    turns: torch.Tensor | None  # each latent row's turn (a multiple of 90°) when the views were turned
    small_latents: torch.Tensor | None  # multi-crop's small views, encoded after the full ones: n rows per view
    generator: torch.Generator  # for an objective that draws more of its own (a separately rotated batch)
    autoencoder: nn.Module  # whose encoder made the latents and whose decoder reconstructs them

    @property
    def count(self) -> int:
        return len(self.images)


def channels_last(images: torch.Tensor) -> torch.Tensor:
    return images.contiguous(memory_format=torch.channels_last)


def draw_training_views(
    images: torch.Tensor,
    autoencoder: nn.Module,
    generator: torch.Generator,
    config: ModelConfig,
    flip: bool,
    turn: bool,
) -> TrainingViews:
    """Draw a step's views of ``images`` and encode them with ``autoencoder``.

    Without contrastive views this is the study's step: the batch itself, turned when ``turn`` (rotation is on).
    With them, two augmented views of each image are encoded together; with ``turn`` and ``config.rotate_views``
    both views of an image are turned alike. Multi-crop's small views come after, encoded on their own.
    """
    if flip:
        images = random_flip(images, generator)
    turns, smalls = None, []
    if config.contrastive:
        views = [contrastive_view(images, generator, config) for _ in range(2)]
        if turn and config.rotate_views:
            views[0], turns = rotate_batch(views[0], generator)
            views[1], _ = rotate_batch(views[1], generator, turns)
            turns = torch.cat([turns, turns])
        inputs = torch.cat(views)
        smalls = [contrastive_view(images, generator, config, small=True) for _ in range(config.small_views)]
    else:
        if turn:
            images, turns = rotate_batch(images, generator)
        views = [images]
        inputs = images
    inputs = channels_last(inputs)
    latent = autoencoder.encode(inputs)
    small_latents = autoencoder.encode(channels_last(torch.cat(smalls))) if smalls else None
    return TrainingViews(images, views[0], inputs, latent, turns, small_latents, generator, autoencoder)
