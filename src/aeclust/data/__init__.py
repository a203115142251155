"""Data: load images from any supported source into an :class:`ImageSet`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from aeclust.data.archive import is_archive_name, load_archive
from aeclust.data.arrays import ARRAY_SUFFIXES, load_array
from aeclust.data.embedded import EMBEDDED_NAME, load_embedded
from aeclust.data.folder import load_image_folder
from aeclust.data.hw9 import export_hw9, is_hw9_dir, load_hw9
from aeclust.data.images import ImageSet, check_images, check_labels
from aeclust.data.pixels import DEFAULT_IMAGE_SIZE, check_image_size, resize_images
from aeclust.errors import InputError

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "EMBEDDED_NAME",
    "ImageSet",
    "check_images",
    "check_labels",
    "export_hw9",
    "load_archive",
    "load_array",
    "load_embedded",
    "load_hw9",
    "load_image_folder",
    "load_images",
]

SOURCES = (
    "a folder of images, a .zip/.tar/.tar.gz archive of one, a .npy/.npz array, "
    f"a HW9-layout directory or '{EMBEDDED_NAME}'"
)


def load_images(
    source: str | os.PathLike | None = None, image_size: int = DEFAULT_IMAGE_SIZE, store: bool | None = None
) -> ImageSet:
    """Load images from ``source`` as image_size×image_size RGB squares.

    ``source`` is the embedded set's name (the default), a HW9-layout directory, a folder of images
    (searched recursively; sub-folder names become labels for scoring), a .zip/.tar/.tar.gz archive of
    such a folder, or one .npy/.npz array. Folders and archives are decoded once into a store on disk that later
    loads memory-map (``store=False``, or AECLUST_STORE=0 in the environment, decodes into memory and writes nothing).
    """
    image_size = check_image_size(image_size)
    if store is None:
        store = os.environ.get("AECLUST_STORE", "1").lower() not in ("0", "off", "no", "false")
    if source is None or str(source) == EMBEDDED_NAME:
        return _resized(load_embedded(), image_size)
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory; expected {SOURCES}")
    if is_hw9_dir(path):
        return _resized(load_hw9(path), image_size)
    if path.is_dir():
        return load_image_folder(path, image_size, store)
    if is_archive_name(path):
        return load_archive(path, image_size, store)
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return load_array(path, image_size)
    raise InputError(f"{path}: expected {SOURCES}, found a {path.suffix or 'extension-less'} file")


def _resized(images: ImageSet, image_size: int) -> ImageSet:
    """The HW9 and embedded sets come at 32×32; any other model input size needs them resized."""
    if images.image_size == image_size:
        return images
    note = f"resized from {images.image_size}×{images.image_size} to {image_size}×{image_size}"
    return dataclasses.replace(
        images,
        train_images=resize_images(images.train_images, image_size),
        val_images=None if images.val_images is None else resize_images(images.val_images, image_size),
        notes=[*images.notes, note],
    )
