"""What every encoder is: images → features, fitted once, saved and loaded (scikit-learn's shape).

A run's first stage. A kind is one subclass with a ``kind`` name, registered in :mod:`aeclust.encoders.registry`;
everything after encoding (choosing k, clustering, refining, reports, predict) takes its features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aeclust.data import ImageSet


class Encoder:
    """Images → features.

    - :meth:`fit` learns from ``images.train_images`` (a pretrained or precomputed encoder learns nothing);
    - :meth:`transform` encodes N×H×W×3 uint8 images into N×D features, or N×C×h×w latents whose pooling the
      clustering stage's ``latent`` setting chooses;
    - :meth:`save` writes what :meth:`load` needs into a directory, and :meth:`load` rebuilds a fitted encoder from
      it alone.
    """

    kind = ""

    def fit(self, images: ImageSet) -> Encoder:
        raise NotImplementedError

    def transform(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit_transform(self, images: ImageSet) -> np.ndarray:
        return self.fit(images).transform(images.train_images)

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> Encoder:
        raise NotImplementedError
