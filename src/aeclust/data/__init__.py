"""Data: load images from any supported source into an :class:`ImageSet`."""

from __future__ import annotations

import os
from pathlib import Path

from aeclust.data.embedded import EMBEDDED_NAME, load_embedded
from aeclust.data.hw9 import export_hw9, is_hw9_dir, load_hw9
from aeclust.data.images import ImageSet, check_images, check_labels
from aeclust.errors import InputError

__all__ = [
    "EMBEDDED_NAME",
    "ImageSet",
    "check_images",
    "check_labels",
    "export_hw9",
    "load_embedded",
    "load_hw9",
    "load_images",
]


def load_images(source: str | os.PathLike | None = None) -> ImageSet:
    """Load images from ``source``: the embedded set's name (the default) or a HW9-layout directory."""
    if source is None or str(source) == EMBEDDED_NAME:
        return load_embedded()
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if is_hw9_dir(path):
        return load_hw9(path)
    if path.is_dir():
        raise InputError(f"{path}: expected a HW9-layout directory holding trainX.npy, found no trainX.npy")
    raise InputError(f"{path}: expected a HW9-layout directory or '{EMBEDDED_NAME}', found a file")
