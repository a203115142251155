"""Latents (and reconstruction error) from a trained autoencoder, in large batches without autograd."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aeclust.errors import unknown_name

INFERENCE_BATCH = 500


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """N×H×W×3 uint8 → N×3×H×W float32 in [-1, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return tensor.div_(127.5).sub_(1.0)


def to_uint8_images(tensor: torch.Tensor) -> np.ndarray:
    """N×3×H×W in [-1, 1] → N×H×W×3 uint8, for showing reconstructions."""
    scaled = (tensor.detach().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.inference_mode()
def encode_images(
    model: nn.Module, images: np.ndarray, batch_size: int = INFERENCE_BATCH, with_mse: bool = False
) -> tuple[np.ndarray, float | None]:
    """Latents of all ``images`` (N×C×h×w float32) and, if asked, their mean reconstruction MSE in [-1, 1] space.

    One pass serves both, so the per-epoch history costs a single forward over the data.
    """
    was_training = model.training
    model.eval()
    latents, squared_error = [], 0.0
    try:
        for start in range(0, len(images), batch_size):
            batch = to_model_input(images[start : start + batch_size]).contiguous(memory_format=torch.channels_last)
            latent = model.encode(batch)
            latents.append(latent.numpy().copy())
            if with_mse:
                squared_error += float(((model.decode(latent) - batch) ** 2).sum(dtype=torch.float64))
    finally:
        model.train(was_training)
    mse = squared_error / (images.size) if with_mse else None
    return np.concatenate(latents), mse


@torch.inference_mode()
def reconstruct(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Reconstructions of ``images`` as uint8 images."""
    was_training = model.training
    model.eval()
    try:
        reconstruction, _ = model(to_model_input(images))
    finally:
        model.train(was_training)
    return to_uint8_images(reconstruction)


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
