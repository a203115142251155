"""A single ``.npy`` or ``.npz`` array of images: N×H×W×3 or N×3×H×W, uint8 or float in [0, 1] or [0, 255].

A ``.npz`` may also hold labels (an answer key, for scoring only) and a labelled val split, under the names
the HW9 layout uses or the plain ones below.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from aeclust.data.images import ImageSet, check_labels
from aeclust.data.pixels import one_line, resize_images
from aeclust.errors import InputError

ARRAY_SUFFIXES = (".npy", ".npz")
# Names looked for in a .npz holding more than one array, first match wins.
IMAGE_KEYS = ("images", "trainX", "train_images", "x", "X", "data")
LABEL_KEYS = ("labels", "trainY", "train_labels", "y", "Y")
VAL_IMAGE_KEY, VAL_LABEL_KEY = "valX", "valY"
NPY_MAGIC, NPZ_MAGIC = b"\x93NUMPY", b"PK"  # a .npz is a zip archive of .npy files
# Float pixels a hair outside [0, 1] or [0, 255] come from arithmetic (1.0000001), not from another scale.
FLOAT_SLACK = 1e-4


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def to_uint8_images(array: np.ndarray, where: str, image_size: int) -> np.ndarray:
    """Check one array of images and return it as N×image_size×image_size×3 uint8.

    Accepts N×H×W×3 or N×3×H×W (when the last axis is not 3), uint8, integers in [0, 255], or floats in
    [0, 1] or [0, 255] (the scale is told by the largest value). Raises :class:`InputError` naming ``where``,
    what was expected and what was found, for anything else.
    """
    if not isinstance(array, np.ndarray):
        raise InputError(f"{where}: expected a numpy array of images, found {type(array).__name__}")
    if array.ndim != 4:
        raise InputError(
            f"{where}: expected a 4-D array of images (N×H×W×3 or N×3×H×W), "
            f"found a {array.ndim}-D array of shape {_shape(array.shape)}"
        )
    if array.shape[-1] == 3:
        channels_last = array
    elif array.shape[1] == 3:
        channels_last = array.transpose(0, 2, 3, 1)
    else:
        raise InputError(
            f"{where}: expected 3 colour channels (N×H×W×3 or N×3×H×W), found shape {_shape(array.shape)}"
        )
    if channels_last.shape[0] == 0:
        raise InputError(f"{where}: expected at least one image, found shape {_shape(array.shape)}")
    if 0 in channels_last.shape[1:3]:
        raise InputError(f"{where}: expected images of at least 1×1 pixels, found shape {_shape(array.shape)}")
    pixels = _to_uint8(channels_last, where)
    return resize_images(np.ascontiguousarray(pixels), image_size)


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InputError(
                f"{where}: expected integer pixel values in [0, 255], found {array.dtype} values from {low} to {high}"
            )
        return array.astype(np.uint8)
    if kind != "f":
        raise InputError(f"{where}: expected uint8 or float pixel values, found dtype {array.dtype}")
    finite = np.isfinite(array)
    if not finite.all():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        first = int(np.flatnonzero(~finite.reshape(len(array), -1).all(axis=1))[0])
        raise InputError(
            f"{where}: expected finite pixel values, found {nan} NaN and {inf} inf (the first in image {first})"
        )
    low, high = float(array.min()), float(array.max())
    if low < -FLOAT_SLACK or high > 255 * (1 + FLOAT_SLACK):
        raise InputError(
            f"{where}: expected float pixel values in [0, 1] or [0, 255], found values from {low:g} to {high:g}"
        )
    scale = 255.0 if high <= 1 + FLOAT_SLACK else 1.0
    return np.clip(np.rint(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def _read(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(NPY_MAGIC))
    except OSError as error:
        raise InputError(
            f"{path}: expected a {suffix} array of images, could not read it ({one_line(error)})"
        ) from None
    # Checked here because numpy, failing to recognise a file, reports it as refused pickled data.
    if not start.startswith(NPZ_MAGIC if suffix == ".npz" else NPY_MAGIC):
        found = "an empty file" if not start else f"a file starting {start[:6]!r}"
        raise InputError(f"{path}: expected a {suffix} array of images, found {found}, not numpy's format")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(
            f"{path}: expected a {suffix} array of images, found an unreadable file ({one_line(error)})"
        ) from None


def _pick(arrays: dict[str, np.ndarray], keys: tuple[str, ...]) -> str | None:
    return next((key for key in keys if key in arrays), None)


def load_array(path: str | os.PathLike, image_size: int = 32) -> ImageSet:
    """Images from one .npy array, or from a .npz holding them (and optionally labels and a val split)."""
    path = Path(path)
    where = str(path)
    contents = _read(path)
    if isinstance(contents, np.ndarray):
        return ImageSet(name=path.stem, train_images=to_uint8_images(contents, where, image_size), source=where)

    if not contents:
        raise InputError(f"{where}: expected an array of images, found an empty .npz")
    image_key = next(iter(contents)) if len(contents) == 1 else _pick(contents, IMAGE_KEYS)
    if image_key is None:
        raise InputError(
            f"{where}: expected the images under one of {', '.join(IMAGE_KEYS)} (or a single array), "
            f"found {', '.join(contents)}"
        )
    train = to_uint8_images(contents[image_key], f"{where} [{image_key}]", image_size)
    label_key = _pick(contents, LABEL_KEYS)
    train_labels = None
    if label_key is not None:
        train_labels = check_labels(contents[label_key], len(train), f"{where} [{label_key}]")
    val_images = val_labels = None
    if VAL_IMAGE_KEY in contents or VAL_LABEL_KEY in contents:
        if not (VAL_IMAGE_KEY in contents and VAL_LABEL_KEY in contents):
            raise InputError(f"{where}: expected {VAL_IMAGE_KEY} and {VAL_LABEL_KEY} together, found only one of them")
        val_images = to_uint8_images(contents[VAL_IMAGE_KEY], f"{where} [{VAL_IMAGE_KEY}]", image_size)
        val_labels = check_labels(contents[VAL_LABEL_KEY], len(val_images), f"{where} [{VAL_LABEL_KEY}]")
    return ImageSet(
        name=path.stem,
        train_images=train,
        train_labels=train_labels,
        val_images=val_images,
        val_labels=val_labels,
        source=where,
    )
