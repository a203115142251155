"""Latents → features for the clustering stage (the latents come from :func:`aeclust.runtime.infer.infer`)."""

from __future__ import annotations

import numpy as np

from aeclust.errors import unknown_name
from aeclust.runtime.io import release_pages

LATENT_MODES = ("flatten", "pool", "pool+flatten")
SCALINGS = ("none", "standardize", "l2")
POOL_CHUNK = 8192  # latents averaged at a time: 64 MB of 128×4×4 latents


def spatial_means(latents: np.ndarray) -> np.ndarray:
    """N×C×h×w latents → N×C, each channel averaged over space, a chunk of rows at a time.

    The latents may be a memory-mapped file larger than memory: chunk by chunk, with the pages read let go, only
    the N×C result is ever resident. Each row's mean is computed exactly as a whole-array mean would compute it.
    """
    means = np.empty(latents.shape[:2], dtype=np.float32)
    for start in range(0, len(latents), POOL_CHUNK):
        means[start : start + POOL_CHUNK] = latents[start : start + POOL_CHUNK].mean(axis=(2, 3))
        release_pages(latents)
    return means


def raw_features(latents: np.ndarray, mode: str = "flatten") -> np.ndarray:
    """N×C×h×w latents (or N×D features, which pass as they are) → N×D float32 features, before scaling."""
    if latents.ndim == 2:  # features already: an encoder that pools its own output
        return np.asarray(latents, dtype=np.float32)
    if mode == "flatten":  # a copy of its own: the latents may be a read-only memory-mapped file
        features = latents.reshape(len(latents), -1).astype(np.float32)
    elif mode == "pool":  # float32, and its own already: no second copy of a million rows
        features = spatial_means(latents)
    elif mode == "pool+flatten":
        features = np.concatenate([spatial_means(latents), latents.reshape(len(latents), -1)], axis=1)
        features = features.astype(np.float32, copy=False)
    else:
        raise unknown_name("latent mode", mode, LATENT_MODES)
    return features


class LatentFeatures:
    """Latents → the clustering stage's features: pooled or flattened (``mode``), then scaled (``scaling``).

    Fitted like a scikit-learn scaler: for "standardize", :meth:`fit` keeps the fitted images' ``mean_`` and
    ``scale_`` (their standard deviation, plus 1e-6), so that :meth:`transform` scales other images as those were;
    "l2" puts every row at unit length, "none" leaves it (neither keeps statistics: at a million rows their
    computing would hold a second copy of the features).
    """

    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def __init__(self, mode: str = "flatten", scaling: str = "none") -> None:
        self.mode, self.scaling = mode, scaling

    def check(self) -> LatentFeatures:
        if self.mode not in LATENT_MODES:
            raise unknown_name("latent mode", self.mode, LATENT_MODES)
        if self.scaling not in SCALINGS:
            raise unknown_name("scaling", self.scaling, SCALINGS)
        return self

    def fit(self, latents: np.ndarray) -> LatentFeatures:
        self.fit_transform(latents)
        return self

    def fit_transform(self, latents: np.ndarray) -> np.ndarray:
        raw = raw_features(latents, self.check().mode)
        if self.scaling == "standardize":
            self.mean_, self.scale_ = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        return self._scaled(raw)

    def transform(self, latents: np.ndarray) -> np.ndarray:
        return self._scaled(raw_features(latents, self.mode))

    def _scaled(self, raw: np.ndarray) -> np.ndarray:
        if self.scaling == "standardize":
            return (raw - self.mean_) / self.scale_
        if self.scaling == "l2":
            # Contrastive training compares directions (cosine similarity), so cluster directions too.
            return raw / (np.linalg.norm(raw, axis=1, keepdims=True) + 1e-12)
        return raw

    def state(self) -> dict[str, np.ndarray]:
        """What :meth:`from_state` needs, as plain arrays (the run's ``centres.npz`` keeps them)."""
        state = {"mode": np.array(self.mode), "scaling": np.array(self.scaling)}
        if self.mean_ is not None:
            state |= {"mean": self.mean_, "std": self.scale_}
        return state

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> LatentFeatures:
        """Features as :meth:`state` kept them; a name this aeclust does not know (a file from a later release) is
        refused with the known ones."""
        features = cls(str(arrays["mode"]), str(arrays["scaling"])).check()
        if features.scaling == "standardize":
            features.mean_, features.scale_ = arrays["mean"], arrays["std"]
        return features


def latent_features(latents: np.ndarray, mode: str = "flatten", scaling: str = "none") -> np.ndarray:
    """N×C×h×w latents → N×D features for clustering, scaled by their own statistics (:class:`LatentFeatures`)."""
    return LatentFeatures(mode, scaling).fit_transform(latents)
