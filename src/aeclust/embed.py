"""Latents → features for the clustering stage (the latents themselves come from :func:`aeclust.infer.infer`)."""

from __future__ import annotations

import numpy as np

from aeclust.data.store import release_pages
from aeclust.errors import unknown_name

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


def latent_features(latents: np.ndarray, mode: str = "flatten", scaling: str = "none") -> np.ndarray:
    """N×C×h×w latents → N×D features for clustering."""
    if mode == "flatten":  # a copy of its own: the latents may be a read-only memory-mapped file
        features = latents.reshape(len(latents), -1).astype(np.float32)
    elif mode == "pool":  # float32, and its own already: no second copy of a million rows
        features = spatial_means(latents)
    elif mode == "pool+flatten":
        features = np.concatenate([spatial_means(latents), latents.reshape(len(latents), -1)], axis=1)
        features = features.astype(np.float32, copy=False)
    else:
        raise unknown_name("latent mode", mode, LATENT_MODES)
    if scaling == "standardize":
        features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)
    elif scaling == "l2":
        # Contrastive training compares directions (cosine similarity), so cluster directions too.
        features = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
    elif scaling != "none":
        raise unknown_name("scaling", scaling, SCALINGS)
    return features
