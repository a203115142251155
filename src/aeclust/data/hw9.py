"""The HW9 layout: a directory holding trainX.npy, and optionally valX.npy + valY.npy and trainY.npy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aeclust.data.images import ImageSet, load_npy
from aeclust.errors import RunDirError
from aeclust.runtime.io import save_npy_atomic

TRAIN_IMAGES, VAL_IMAGES, VAL_LABELS, TRAIN_LABELS = "trainX.npy", "valX.npy", "valY.npy", "trainY.npy"


def is_hw9_dir(path: Path) -> bool:
    return path.is_dir() and (path / TRAIN_IMAGES).is_file()


def load_hw9(directory: str | os.PathLike) -> ImageSet:
    """Read a HW9-layout directory. ``trainY.npy`` is kept only as an answer key for scoring."""
    directory = Path(directory)
    train = load_npy(directory / TRAIN_IMAGES, "train images (N×32×32×3 uint8)")
    val_images = val_labels = train_labels = None
    if (directory / VAL_IMAGES).exists() or (directory / VAL_LABELS).exists():
        val_images = load_npy(directory / VAL_IMAGES, "val images")
        val_labels = load_npy(directory / VAL_LABELS, "val labels")
    if (directory / TRAIN_LABELS).exists():
        train_labels = load_npy(directory / TRAIN_LABELS, "train labels (answer key)")
    return ImageSet(
        name=directory.name,
        train_images=train,
        val_images=val_images,
        val_labels=val_labels,
        train_labels=train_labels,
        source=str(directory),
    )


def export_hw9(images: ImageSet, directory: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Write ``images`` in HW9 layout. Refuses to replace existing files unless ``overwrite``."""
    directory = Path(directory)
    arrays = {TRAIN_IMAGES: images.train_images}
    if images.val_images is not None:
        arrays[VAL_IMAGES] = images.val_images
        arrays[VAL_LABELS] = _compact(images.val_labels)
    if images.train_labels is not None:
        arrays[TRAIN_LABELS] = _compact(images.train_labels)
    existing = [name for name in arrays if (directory / name).exists()]
    if existing and not overwrite:
        raise RunDirError(f"{directory}: already holds {', '.join(existing)}; pass --force to replace them")
    written = []
    for name, array in arrays.items():
        save_npy_atomic(directory / name, array)
        written.append(directory / name)
    return written


def _compact(labels: np.ndarray) -> np.ndarray:
    """uint8 labels when they fit, as the HW9 files have them."""
    return labels.astype(np.uint8) if labels.min() >= 0 and labels.max() < 256 else labels
