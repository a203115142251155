"""Shared fixtures: small real image sets (slices of the embedded set) so tests run in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aeclust.config import ClusterConfig, ModelConfig, RunConfig, TrainConfig
from aeclust.data import ImageSet, export_hw9, load_embedded


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Decode the embedded set once per session, into a private cache."""
    import os

    os.environ.setdefault("AECLUST_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def embedded() -> ImageSet:
    return load_embedded()


@pytest.fixture(scope="session")
def small_set(embedded) -> ImageSet:
    """240 train and 120 val images of the embedded set, with its answer key."""
    return ImageSet(
        name="small",
        train_images=embedded.train_images[:240],
        train_labels=embedded.train_labels[:240],
        val_images=embedded.val_images[:120],
        val_labels=embedded.val_labels[:120],
        class_names=embedded.class_names,
    )


@pytest.fixture(scope="session")
def small_hw9_dir(small_set, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("hw9")
    export_hw9(small_set, directory)
    return directory


def tiny_config(epochs: int = 2, seed: int = 0, rotation: bool = True, arch: str = "resnet") -> RunConfig:
    """A configuration small enough to train in a second or two."""
    widths = (8, 16, 32, 32) if arch == "resnet" else (8, 16, 32)
    return RunConfig(
        model_name="tiny",
        seed=seed,
        threads=1,
        model=ModelConfig(arch=arch, widths=widths, rotation=rotation, rotation_weight=1.0),
        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-3),
        cluster=ClusterConfig(reducer="pca", components=10, embedder="tsne", perplexity=10),
    )


def random_images(n: int, side: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def process_gone(pid: int) -> bool:
    """Whether a process (not necessarily this one's child, so not one to wait for) has ended: no longer in /proc,
    or a zombie its new parent has yet to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
