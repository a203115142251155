"""Latents → features for the clustering stage (the latents themselves come from :func:`aeclust.infer.infer`)."""

from __future__ import annotations

import numpy as np

from aeclust.errors import unknown_name

LATENT_MODES = ("flatten", "pool", "pool+flatten")


SCALINGS = ("none", "standardize", "l2")


def latent_features(latents: np.ndarray, mode: str = "flatten", scaling: str = "none") -> np.ndarray:
    """N×C×h×w latents → N×D features for clustering."""
    if mode == "flatten":
        features = latents.reshape(len(latents), -1)
    elif mode == "pool":
        features = latents.mean(axis=(2, 3))
    elif mode == "pool+flatten":
        features = np.concatenate([latents.mean(axis=(2, 3)), latents.reshape(len(latents), -1)], axis=1)
    else:
        raise unknown_name("latent mode", mode, LATENT_MODES)
    features = features.astype(np.float32)
    if scaling == "standardize":
        features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)
    elif scaling == "l2":
        # Contrastive training compares directions (cosine similarity), so cluster directions too.
        features = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
    elif scaling != "none":
        raise unknown_name("scaling", scaling, SCALINGS)
    return features
