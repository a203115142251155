"""The improved autoencoder: residual blocks, learned stride-2 downsampling, sub-pixel upsampling."""

from __future__ import annotations

import torch
from torch import nn

from aeclust.nn.models.base import Autoencoder

NORMS = {"batch": nn.BatchNorm2d, "group": lambda c: nn.GroupNorm(min(8, c), c), "none": lambda c: nn.Identity()}
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


def shrink_factor(widths: tuple[int, ...]) -> int:
    """How much the encoder shrinks a side: each width after the first halves it."""
    return 2 ** (len(widths) - 1)


class ResidualBlock(nn.Module):
    """conv3×3 → norm → act → conv3×3 → norm, added to the input, then act."""

    def __init__(self, channels: int, norm: str = "batch", activation: str = "relu") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), NORMS[norm](channels), ACTIVATIONS[activation](),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), NORMS[norm](channels),
        )  # fmt: skip
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x + self.body(x))


class StridedDownsample(nn.Sequential):
    """Halve the side with a learned conv (kernel 2, stride 2) rather than max-pooling."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, activation: str) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 2, stride=2), NORMS[norm](out_channels), ACTIVATIONS[activation]())


class SubPixelUpsample(nn.Sequential):
    """Double the side by a conv to 4× the output channels, then ``nn.PixelShuffle(2)``."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, activation: str) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels * 4, 3, padding=1, bias=False),
            nn.PixelShuffle(2),
            NORMS[norm](out_channels),
            ACTIVATIONS[activation](),
        )


class ResNetAutoencoder(Autoencoder):
    """A stem, then per width a stride-2 downsample and residual blocks; the decoder mirrors it.

    ``widths[0]`` is the stem's width at full resolution, where ``stem_blocks`` residual blocks run;
    every further width halves the side (32→16→8→4 for four widths at 32×32). Blocks at full resolution
    cost as much as all the others together, so the fast models use ``stem_blocks=0``.
    """

    def __init__(
        self,
        image_size: int = 32,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        blocks_per_stage: int = 1,
        stem_blocks: int = 1,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__()

        def blocks(channels: int, count: int) -> list[nn.Module]:
            return [ResidualBlock(channels, norm, activation) for _ in range(count)]

        stem = [nn.Conv2d(3, widths[0], 3, padding=1, bias=False), NORMS[norm](widths[0]), ACTIVATIONS[activation]()]
        down: list[nn.Module] = stem + blocks(widths[0], stem_blocks)
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            down += [StridedDownsample(c_in, c_out, norm, activation)] + blocks(c_out, blocks_per_stage)
        self.encoder = nn.Sequential(*down)

        up: list[nn.Module] = []
        for c_in, c_out in zip(widths[:0:-1], widths[-2::-1]):
            count = stem_blocks if c_out == widths[0] else blocks_per_stage
            up += [SubPixelUpsample(c_in, c_out, norm, activation)] + blocks(c_out, count)
        up += [nn.Conv2d(widths[0], 3, 3, padding=1), nn.Tanh()]
        self.decoder = nn.Sequential(*up)
        side = image_size // shrink_factor(widths)
        self.latent_shape = (widths[-1], side, side)
