"""Batched image augmentations in plain torch, for the contrastive objective and flips.

torchvision cannot be imported beside the pinned torch build here, and its transforms work one image at a
time; drawing every image's parameters at once and applying them with one ``grid_sample`` is faster on a CPU.
All functions take and return N×3×H×W tensors in [-1, 1], and draw randomness only from ``generator``.
The random parameters (a few numbers per image) are drawn on the CPU and moved to the images' device, where the
pixel work happens: the same seed gives the same views on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from aeclust.config import ModelConfig

LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images left to right."""
    flipped = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    out = images.clone()
    out[flipped] = images[flipped].flip(3)
    return out


def random_resized_crop(
    images: torch.Tensor,
    generator: torch.Generator,
    min_area: float = 0.25,
    flip: bool = True,
    size: int = 0,
    max_area: float = 1.0,
) -> torch.Tensor:
    """Crop a random rectangle (min_area..max_area of the image, aspect 3/4..4/3), resize it to size×size (0: back
    to the image's own size), maybe mirror it."""
    n = len(images)
    area = _uniform(n, min_area, max_area, generator)
    aspect = torch.exp(_uniform(n, math.log(3 / 4), math.log(4 / 3), generator))
    scale_x, scale_y = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    shift_x = _uniform(n, -1, 1, generator) * (1 - scale_x)
    shift_y = _uniform(n, -1, 1, generator) * (1 - scale_y)
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = scale_x * mirror, shift_x
    theta[:, 1, 1], theta[:, 1, 2] = scale_y, shift_y
    height, width = (size, size) if size else images.shape[2:]
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, [n, images.shape[1], height, width], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_distort(
    images: torch.Tensor,
    generator: torch.Generator,
    strength: float = 0.4,
    p_jitter: float = 0.8,
    p_gray: float = 0.2,
    hue: float = 0.0,
) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue (with probability p_jitter), then grayscale (p_gray).

    ``hue`` is the largest hue shift, as a share of a full turn of the colour wheel (SimCLR uses 0.1 for CIFAR).
    """
    n = len(images)
    x = (images + 1) / 2

    def jittered() -> torch.Tensor:
        return (torch.rand(n, generator=generator) < p_jitter).float()

    def factor() -> torch.Tensor:
        jitter = jittered()
        return (1 + _uniform(n, -strength, strength, generator) * jitter).view(n, 1, 1, 1).to(images.device)

    brightness, contrast, saturation = factor(), factor(), factor()
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    luma = sum(w * x[:, i : i + 1] for i, w in enumerate(LUMA))
    x = luma + (x - luma) * saturation
    if hue > 0:  # drawn only when asked for, so the random stream (and every result) without hue stays as it was
        x = rotate_hue(x, _uniform(n, -hue, hue, generator) * jittered() * 2 * math.pi)
    gray = (torch.rand(n, generator=generator) < p_gray).float().view(n, 1, 1, 1).to(images.device)
    x = x * (1 - gray) + luma * gray
    return x.clamp(0, 1) * 2 - 1


def rotate_hue(rgb: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Turn each image's colours about the grey axis by its angle (radians), keeping luma; rgb in [0, 1].

    A rotation of the chroma plane in YIQ space: one 3×3 matrix per image, where an HSV round trip (what
    torchvision does) would need per-pixel branching. The two differ slightly in which hues they map where.
    """
    cos, sin = angles.cos(), angles.sin()
    rotation = torch.zeros(len(rgb), 3, 3)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    transform = (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).to(rgb.device, rgb.dtype)
    return torch.einsum("nij,njhw->nihw", transform, rgb)


_RGB_TO_YIQ = torch.tensor([list(LUMA), [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def contrastive_view(
    images: torch.Tensor, generator: torch.Generator, settings: ModelConfig, small: bool = False
) -> torch.Tensor:
    """One SimCLR-style view: a random resized crop (to ``settings.view_size``), mirrored or not, then colour
    distortion, as ``settings`` say. ``small``: one of multi-crop's small views instead (``settings.small_*``)."""
    if small:
        cropped = random_resized_crop(
            images, generator, settings.small_crop_area, size=settings.small_view_size, max_area=settings.min_crop_area
        )
    else:
        cropped = random_resized_crop(images, generator, settings.min_crop_area, size=settings.view_size)
    return color_distort(cropped, generator, settings.colour_strength, p_gray=settings.grayscale, hue=settings.hue)
