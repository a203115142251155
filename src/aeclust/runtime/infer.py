"""One inference loop for every trained network: latents, pooled features, reconstructions and a head's
probabilities, in large batches, in eval mode, without autograd, on any device, sharded across processes."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aeclust.runtime.engine import Engine
from aeclust.runtime.io import RELEASE_EVERY, PageReleaser, release_pages, save_npy_atomic, temporary_beside
from aeclust.runtime.progress import Progress

INFERENCE_BATCH = 500
OUTPUTS = ("latents", "pooled", "reconstructions", "probabilities", "mse")
CPU_ENGINE = Engine(torch.device("cpu"))


@dataclass
class Inference:
    """What :func:`infer` computed, in the images' order (only the outputs asked for): the latents as a float32
    array (memory-mapped when :func:`infer` wrote them to a file), the others as CPU tensors."""

    latents: np.ndarray | None = None  # N×C×h×w
    pooled: torch.Tensor | None = None  # N×C, the latents averaged over space, unit length
    reconstructions: torch.Tensor | None = None  # N×3×H×W in [-1, 1]
    probabilities: torch.Tensor | None = None  # N×k, the head's softmax over the pooled latents
    mse: float | None = None  # mean squared reconstruction error over every pixel value, in [-1, 1] space


def pooled_unit_latents(latent: torch.Tensor) -> torch.Tensor:
    """Globally pooled, unit-length latents: the space the refinement finds neighbours in and its head reads."""
    return F.normalize(latent.float().mean(dim=(2, 3)), dim=1)


class OutputRows:
    """One output's rows, put in place batch by batch: a float32 array made when the first batch shows the
    shape, or a memory-mapped .npy file when ``path`` is given.

    Filling an array made up front holds one copy of the output, where collecting batches and concatenating
    them held two; at a million images the latents alone are 8 GB, so they go to a file whose pages the kernel
    may drop. The file is written under a temporary name and renamed into place only when whole.
    """

    def __init__(self, count: int, path: Path | None = None) -> None:
        self.count, self.path = count, path
        self.array: np.ndarray | None = None
        self.temporary: Path | None = None
        self.batches = 0

    def put(self, offset: int, values: torch.Tensor) -> None:
        values = values.float().cpu().numpy()
        if self.array is None:
            shape = (self.count, *values.shape[1:])
            if self.path is None:
                self.array = np.empty(shape, dtype=np.float32)
            else:
                self.temporary = temporary_beside(self.path)
                self.array = np.lib.format.open_memmap(self.temporary, mode="w+", dtype=np.float32, shape=shape)
        self.array[offset : offset + len(values)] = values
        self.batches += 1
        if self.path is not None and self.batches % RELEASE_EVERY == 0:
            self.array.flush()  # written pages go to the file before the process lets go of them
            release_pages(self.array)

    def result(self) -> np.ndarray:
        """The whole output: the array, or the file renamed into place and mapped again read-only."""
        if self.array is None:
            return np.zeros((0,), dtype=np.float32)
        if self.path is None:
            return self.array
        self.array.flush()
        self.array = None  # unmapped before the rename
        with open(self.temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temporary, self.path)
        self.temporary = None
        return np.load(self.path, mmap_mode="r")

    def discard(self) -> None:
        """Remove a half-written file (the loop stopped early)."""
        self.array = None
        if self.temporary is not None:
            self.temporary.unlink(missing_ok=True)


@torch.inference_mode()
def infer(
    model: nn.Module,
    images: np.ndarray,
    outputs: Collection[str] = ("latents",),
    *,
    head: nn.Module | None = None,
    engine: Engine | None = None,
    batch_size: int = INFERENCE_BATCH,
    latents_file: Path | None = None,
) -> Inference:
    """Run ``model`` (anything with ``encode`` and, for reconstructions or MSE, ``decode``) over N×H×W×3 uint8
    ``images`` and return the ``outputs`` asked for (see :data:`OUTPUTS`); ``probabilities`` need ``head``.

    With ``latents_file`` the latents are written there as a .npy file (atomically) and come back memory-mapped,
    so they never need to fit in memory. Under torchrun each process encodes its own share and every process gets
    all of it back (the main one writes ``latents_file``). The modules are left in the mode they were in.
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
    share = engine.shard(len(images))
    # Under torchrun each process fills its share, gathered afterwards; the file is written once it is whole.
    direct_file = latents_file if not engine.distributed else None
    rows = {
        name: OutputRows(share.stop - share.start, direct_file if name == "latents" else None)
        for name in outputs
        if name != "mse"
    }
    squared_error = 0.0
    progress = Progress(len(images), "encoding", "image", enabled=engine.is_main)
    try:
        pages = PageReleaser(images)
        for start in range(share.start, share.stop, batch_size):
            pages.batch_read()
            offset = start - share.start
            batch = engine.images_to_device(images[start : min(start + batch_size, share.stop)])
            progress.update(len(batch) * engine.world_size)
            with engine.autocast():
                latent = model.encode(batch)
                if "latents" in rows:
                    rows["latents"].put(offset, latent)
                if "pooled" in rows or "probabilities" in rows:
                    pooled = pooled_unit_latents(latent)
                    if "pooled" in rows:
                        rows["pooled"].put(offset, pooled)
                    if "probabilities" in rows:
                        rows["probabilities"].put(offset, head(pooled).float().softmax(1))
                if "reconstructions" in rows or "mse" in outputs:
                    reconstruction = model.decode(latent).float()
                    if "reconstructions" in rows:
                        rows["reconstructions"].put(offset, reconstruction)
                    if "mse" in outputs:
                        squared_error += float(((reconstruction - batch) ** 2).sum(dtype=torch.float64))
    except BaseException:
        for output in rows.values():
            output.discard()
        raise
    finally:
        progress.close()
        for module, mode in zip(modules, modes):
            module.train(mode)
    inference = Inference()
    for name, output in rows.items():
        local = output.result()
        if engine.distributed:
            local = engine.gather(torch.from_numpy(local).to(engine.collective_device)).cpu().numpy()
        if name == "latents":
            if latents_file is not None and engine.distributed and engine.is_main:
                save_npy_atomic(latents_file, local)
                local = np.load(latents_file, mmap_mode="r")
            inference.latents = local
        else:
            setattr(inference, name, torch.from_numpy(local))
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
