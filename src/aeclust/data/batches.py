"""Batches of images read by index from an array or the decoded store, in this process or in worker processes.

Training and refinement read their batches at random indices. From an in-memory array that is a copy; from the
store it can mean waiting on the disk when the images do not fit in the page cache. With ``workers`` > 0 a torch
DataLoader reads the next batches in other processes while this one computes, so a GPU is not left waiting; on a
CPU the workers would take the cores the model needs, so the default there is none (see :func:`loader_workers`).
Either way every batch holds the same images in the same order: the indices are drawn here, not in the workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from aeclust.runtime.io import PageReleaser

GPU_WORKERS = 4  # enough to keep one GPU fed from 32×32 images; more only add start-up time
PREFETCH_BATCHES = 4  # batches each worker reads ahead


def loader_workers(setting: int | None, device: torch.device) -> int:
    """How many worker processes read batches: the setting, or by default none on a CPU and a few on a GPU (never
    more than the cores beside this process)."""
    if setting is not None:
        return max(0, setting)
    if device.type == "cpu":
        return 0
    return max(0, min(GPU_WORKERS, (os.cpu_count() or 1) - 1))


def images_at(images: np.ndarray, indices: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images[indices.numpy()]))


class IndexedBatches(Dataset):
    """Item ``i`` is the ``i``-th batch of indices and those images, as a uint8 tensor."""

    def __init__(self, images: np.ndarray, batches: list[torch.Tensor]) -> None:
        self.images, self.batches = images, batches
        self.pages = PageReleaser(images)  # each worker lets go of the store pages it has read

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.pages.batch_read()
        indices = self.batches[position]
        return indices, images_at(self.images, indices)


def read_batches(
    images: np.ndarray, batches: Iterable[torch.Tensor], workers: int = 0, pin_memory: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Each batch of indices with its images (N×H×W×3 uint8), in order; read by ``workers`` processes if > 0."""
    if workers <= 0:
        pages = PageReleaser(images)
        for indices in batches:
            pages.batch_read()
            yield indices, images_at(images, indices)
        return
    # Forked workers share the store's mapping; a spawned one would be sent a memory-mapped array as a pickled copy.
    context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    loader = DataLoader(
        IndexedBatches(images, list(batches)), batch_size=None, shuffle=False, num_workers=workers,
        pin_memory=pin_memory, prefetch_factor=PREFETCH_BATCHES, multiprocessing_context=context,
    )  # fmt: skip
    yield from loader
