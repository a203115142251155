"""Autoencoders by architecture name: ``create_autoencoder(ModelConfig(...))``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from aeclust.config import ModelConfig
from aeclust.errors import unknown_name
from aeclust.nn.models.baseline import BaselineAutoencoder
from aeclust.nn.models.heads import ProjectionHead, RotationHead, rotate_batch
from aeclust.nn.models.resnet import ACTIVATIONS, NORMS, ResNetAutoencoder, shrink_factor

__all__ = ["ARCHITECTURES", "BaselineAutoencoder", "ProjectionHead", "ResNetAutoencoder", "RotationHead", "create_autoencoder", "rotate_batch", "shrink_factor"]


def _baseline(config: ModelConfig, image_size: int) -> nn.Module:
    return BaselineAutoencoder(image_size, widths=tuple(config.widths))


def _resnet(config: ModelConfig, image_size: int) -> nn.Module:
    if config.norm not in NORMS:
        raise unknown_name("norm", config.norm, list(NORMS))
    if config.activation not in ACTIVATIONS:
        raise unknown_name("activation", config.activation, list(ACTIVATIONS))
    return ResNetAutoencoder(
        image_size,
        widths=tuple(config.widths),
        blocks_per_stage=config.blocks_per_stage,
        stem_blocks=config.stem_blocks,
        norm=config.norm,
        activation=config.activation,
    )


# Architecture name → builder, as timm's registry maps model names; the known names make the error message.
ARCHITECTURES: dict[str, Callable[[ModelConfig, int], nn.Module]] = {"baseline": _baseline, "resnet": _resnet}


def create_autoencoder(config: ModelConfig, image_size: int = 32) -> nn.Module:
    """Build the autoencoder ``config`` describes, for square images of side ``image_size``."""
    if config.arch not in ARCHITECTURES:
        raise unknown_name("architecture", config.arch, list(ARCHITECTURES))
    return ARCHITECTURES[config.arch](config, image_size)
