"""The study's baseline autoencoder: three conv + max-pool stages, three wide transposed convs back."""

from __future__ import annotations

from torch import nn

from aeclust.nn.models.base import Autoencoder


class BaselineAutoencoder(Autoencoder):
    """Encoder conv 3→64→128→256 (3×3, ReLU, 2×2 max-pool each); decoder ConvTranspose2d k5, k9, k17, Tanh.

    On 32×32 input the latent is 256×4×4, and the transposed convs grow it 4→8→16→32 without stride.
    """

    def __init__(self, image_size: int = 32, widths: tuple[int, int, int] = (64, 128, 256)) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        # Kernel sizes s/8+1, s/4+1, s/2+1 double the side each time without stride (5, 9, 17 at 32×32).
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c3, c2, image_size // 8 + 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c2, c1, image_size // 4 + 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c1, 3, image_size // 2 + 1), nn.Tanh(),
        )  # fmt: skip
        self.latent_shape = (c3, image_size // 8, image_size // 8)
