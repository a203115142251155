"""Objective names → builders: which self-supervised objectives a model's settings switch on, in the order their
losses are added (an order that also fixes the random stream: rotation draws its own turns last)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from aeclust.config import ModelConfig
from aeclust.nn.models import shrink_factor
from aeclust.nn.objectives.contrastive import ContrastiveObjective
from aeclust.nn.objectives.reconstruction import ReconstructionObjective
from aeclust.nn.objectives.rotation import RotationObjective
from aeclust.runtime.engine import Engine


def _reconstruction(model: nn.Module, config: ModelConfig, engine: Engine | None) -> nn.Module | None:
    if config.reconstruction_weight <= 0:
        return None
    return ReconstructionObjective(config.reconstruction_weight, config.reconstruction_share)


def _contrastive(model: nn.Module, config: ModelConfig, engine: Engine | None) -> nn.Module | None:
    if not config.contrastive:
        return None
    channels = model.latent_shape[0]
    return ContrastiveObjective(
        channels, config.contrastive_weight, config.temperature, engine, model.encoder, config.momentum
    )


def _rotation(model: nn.Module, config: ModelConfig, engine: Engine | None) -> nn.Module | None:
    if not config.rotation:
        return None
    channels, side, _ = model.latent_shape
    if config.contrastive and config.rotate_views and config.view_size:  # the head reads the turned views' grid
        side = config.view_size // shrink_factor(config.widths)
    elif config.contrastive and config.rotation_size:  # the head reads the resized batch's grid
        side = config.rotation_size // shrink_factor(config.widths)
    return RotationObjective(channels * side * side, config.rotation_weight, config.rotation_size)


OBJECTIVES: dict[str, Callable[[nn.Module, ModelConfig, Engine | None], nn.Module | None]] = {
    "reconstruction": _reconstruction,
    "contrastive": _contrastive,
    "rotation": _rotation,
}


def build_objectives(model: nn.Module, config: ModelConfig, engine: Engine | None = None) -> nn.ModuleDict:
    """The objectives ``config`` switches on for ``model``, by name, in :data:`OBJECTIVES`' order."""
    # Heads draw their first weights from torch's global generator in this order, as releases before objectives
    # were modules did, so a seed starts from the same weights as it did then.
    built = {name: OBJECTIVES[name](model, config, engine) for name in DRAWING_ORDER}
    return nn.ModuleDict({name: built[name] for name in OBJECTIVES if built[name] is not None})


DRAWING_ORDER = ("reconstruction", "rotation", "contrastive")
