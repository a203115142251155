"""The in-memory image set every stage works on, and the checks that make it trustworthy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aeclust.errors import InputError


@dataclass
class ImageSet:
    """Images to cluster (``train``) and, optionally, a labelled set to judge by (``val``).

    Images are N×H×W×3 uint8. ``train_labels`` is an answer key: it is used to score
    results and never by training or clustering.
    """

    name: str
    train_images: np.ndarray
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    train_ids: list[str] | None = None
    class_names: list[str] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        where = self.source or self.name
        check_images(self.train_images, f"{where} (train images)")
        if self.val_images is not None:
            check_images(self.val_images, f"{where} (val images)")
            if self.val_images.shape[1:] != self.train_images.shape[1:]:
                raise InputError(
                    f"{where}: val images are {_shape(self.val_images.shape[1:])} but train images are "
                    f"{_shape(self.train_images.shape[1:])}; expected the same size"
                )
        if (self.val_images is None) != (self.val_labels is None):
            raise InputError(f"{where}: val images and val labels must come together; found only one of them")
        if self.val_labels is not None:
            self.val_labels = check_labels(self.val_labels, len(self.val_images), f"{where} (val labels)")
        if self.train_labels is not None:
            self.train_labels = check_labels(self.train_labels, len(self.train_images), f"{where} (train labels)")
        if self.train_ids is not None and len(self.train_ids) != len(self.train_images):
            raise InputError(
                f"{where}: {len(self.train_ids)} ids for {len(self.train_images)} train images; expected one each"
            )

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def has_val(self) -> bool:
        return self.val_images is not None

    def ids(self) -> list[str]:
        """Row names for prediction.csv: the source file when known, else the index."""
        return self.train_ids if self.train_ids is not None else [str(i) for i in range(len(self.train_images))]



def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def check_images(images: np.ndarray, where: str) -> None:
    """Raise :class:`InputError` unless ``images`` is a non-empty N×H×W×3 uint8 array of square images."""
    if not isinstance(images, np.ndarray):
        raise InputError(f"{where}: expected a numpy array, found {type(images).__name__}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"{where}: expected an N×H×W×3 array, found shape {_shape(images.shape)}")
    if images.dtype != np.uint8:
        raise InputError(f"{where}: expected dtype uint8, found {images.dtype}")
    if len(images) == 0:
        raise InputError(f"{where}: expected at least one image, found 0")
    if images.shape[1] != images.shape[2] or images.shape[1] < 8 or images.shape[1] % 8:
        raise InputError(
            f"{where}: expected square images whose side is a multiple of 8 (such as 32×32), "
            f"found {images.shape[1]}×{images.shape[2]}"
        )


def check_labels(labels: np.ndarray, n_images: int, where: str) -> np.ndarray:
    """Return labels as a 1-D int64 array, or raise :class:`InputError` naming what is wrong."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and 1 in labels.shape:
        labels = labels.reshape(-1)
    if labels.ndim != 1:
        raise InputError(f"{where}: expected a 1-D array of labels, found shape {_shape(labels.shape)}")
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise InputError(f"{where}: expected integer class labels, found dtype {labels.dtype}")
    if len(labels) != n_images:
        raise InputError(f"{where}: expected {n_images} labels (one per image), found {len(labels)}")
    if len(np.unique(labels)) < 2:
        raise InputError(f"{where}: expected labels of at least 2 classes, found only class {labels[0]}")
    return labels.astype(np.int64)


def load_npy(path: Path, what: str, mmap: bool = False) -> np.ndarray:
    """Load one .npy file (``mmap``: memory-mapped read-only), turning numpy's errors into a message that names
    the file."""
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{path}: expected a .npy array ({what}), found an unreadable file ({error})") from None
