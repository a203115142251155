"""Every kind of encoder by name, and the encoder a run directory (or an encoder directory) holds."""

from __future__ import annotations

from pathlib import Path

import torch

from aeclust.encoders.autoencoder import AutoencoderEncoder
from aeclust.encoders.base import Encoder
from aeclust.errors import unknown_name

ENCODERS: dict[str, type[Encoder]] = {kind.kind: kind for kind in (AutoencoderEncoder,)}


def encoder_kind(name: str) -> type[Encoder]:
    """The encoder class registered as ``name``; an unknown name is refused with the known ones."""
    if name not in ENCODERS:
        raise unknown_name("encoder", name, list(ENCODERS))
    return ENCODERS[name]


def load_encoder(directory: Path, device: str | torch.device = "cpu", kind: str = AutoencoderEncoder.kind) -> Encoder:
    """The fitted encoder ``directory`` keeps (a run directory: its trained autoencoder)."""
    return encoder_kind(kind).load(Path(directory), device)
