"""One inference loop for every trained network: latents, pooled features, reconstructions and a head's
probabilities, in large batches, in eval mode, without autograd, on any device, sharded across processes."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aeclust.data.store import PageReleaser
from aeclust.engine import Engine
from aeclust.progress import Progress

INFERENCE_BATCH = 500
OUTPUTS = ("latents", "pooled", "reconstructions", "probabilities", "mse")
CPU_ENGINE = Engine(torch.device("cpu"))


@dataclass
class Inference:
    """What :func:`infer` computed, as CPU tensors in the images' order (only the outputs asked for)."""

    latents: torch.Tensor | None = None  # N×C×h×w
    pooled: torch.Tensor | None = None  # N×C, the latents averaged over space, unit length
    reconstructions: torch.Tensor | None = None  # N×3×H×W in [-1, 1]
    probabilities: torch.Tensor | None = None  # N×k, the head's softmax over the pooled latents
    mse: float | None = None  # mean squared reconstruction error over every pixel value, in [-1, 1] space


def pooled_unit_latents(latent: torch.Tensor) -> torch.Tensor:
    """Globally pooled, unit-length latents: the space the refinement finds neighbours in and its head reads."""
    return F.normalize(latent.float().mean(dim=(2, 3)), dim=1)


@torch.inference_mode()
def infer(
    model: nn.Module,
    images: np.ndarray,
    outputs: Collection[str] = ("latents",),
    *,
    head: nn.Module | None = None,
    engine: Engine | None = None,
    batch_size: int = INFERENCE_BATCH,
) -> Inference:
    """Run ``model`` (anything with ``encode`` and, for reconstructions or MSE, ``decode``) over N×H×W×3 uint8
    ``images`` and return the ``outputs`` asked for (see :data:`OUTPUTS`); ``probabilities`` need ``head``.

    Under torchrun each process encodes its own share and every process gets all of it back. The modules are
    left in the mode they were in.
    """
    unknown = set(outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"unknown inference output(s) {sorted(unknown)}; expected some of {OUTPUTS}")
    if "probabilities" in outputs and head is None:
        raise ValueError("inference of probabilities needs the head that gives them")
    engine = engine or CPU_ENGINE
    modules = [module for module in (model, head) if module is not None]
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in outputs if name != "mse"}
    squared_error = 0.0
    share = engine.shard(len(images))
    progress = Progress(len(images), "encoding", "image", enabled=engine.is_main)
    try:
        pages = PageReleaser(images)
        for start in range(share.start, share.stop, batch_size):
            pages.batch_read()
            batch = engine.images_to_device(images[start : min(start + batch_size, share.stop)])
            progress.update(len(batch) * engine.world_size)
            with engine.autocast():
                latent = model.encode(batch)
                if "latents" in collected:
                    collected["latents"].append(latent.float().cpu())
                if "pooled" in collected or "probabilities" in collected:
                    pooled = pooled_unit_latents(latent)
                    if "pooled" in collected:
                        collected["pooled"].append(pooled.cpu())
                    if "probabilities" in collected:
                        collected["probabilities"].append(head(pooled).float().softmax(1).cpu())
                if "reconstructions" in collected or "mse" in outputs:
                    reconstruction = model.decode(latent).float()
                    if "reconstructions" in collected:
                        collected["reconstructions"].append(reconstruction.cpu())
                    if "mse" in outputs:
                        squared_error += float(((reconstruction - batch) ** 2).sum(dtype=torch.float64))
    finally:
        progress.close()
        for module, mode in zip(modules, modes):
            module.train(mode)
    inference = Inference()
    for name, parts in collected.items():
        local = torch.cat(parts) if parts else torch.empty(0)
        if engine.distributed:
            local = engine.gather(local.to(engine.collective_device)).cpu()
        setattr(inference, name, local)
    if "mse" in outputs:
        inference.mse = engine.sum(squared_error) / max(1, images.size)
    return inference


def to_uint8_images(tensor: torch.Tensor) -> np.ndarray:
    """N×3×H×W in [-1, 1] → N×H×W×3 uint8, for showing reconstructions."""
    scaled = (tensor.detach().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def reconstruct(model: nn.Module, images: np.ndarray, engine: Engine | None = None) -> np.ndarray:
    """Reconstructions of ``images`` as uint8 images."""
    return to_uint8_images(infer(model, images, ("reconstructions",), engine=engine).reconstructions)
