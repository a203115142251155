"""The embedded default set: 9,000 CIFAR-10 images, animals (1) vs vehicles (0), shipped as JPEGs.

CIFAR-10: Alex Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
The archive is decoded once and cached as .npy files outside the repository.
"""

from __future__ import annotations

import csv
import io
import tarfile
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from aeclust.data.hw9 import TRAIN_IMAGES, TRAIN_LABELS, VAL_IMAGES, VAL_LABELS, load_hw9
from aeclust.data.images import ImageSet
from aeclust.data.store import cache_dir
from aeclust.runtime.io import save_npy_atomic

EMBEDDED_NAME = "animals-vs-vehicles"
ARCHIVE = "animals-vs-vehicles-jpg.tar.gz"
CLASS_NAMES = ["vehicle", "animal"]
# Bump when the decoded arrays could change, so stale caches are not reused.
CACHE_VERSION = "1"


def _read_labels(text: str) -> dict[int, int]:
    return {int(row["id"]): int(row["label"]) for row in csv.DictReader(io.StringIO(text))}


def decode_archive(archive: Path) -> dict[str, np.ndarray]:
    """Decode the JPEG archive into HW9 arrays, ordered by the file number."""
    images: dict[str, dict[int, np.ndarray]] = {"train": {}, "val": {}}
    labels: dict[str, dict[int, int]] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name.lstrip("./")
            data = tar.extractfile(member).read()
            if name.endswith("_labels.csv"):
                labels[name.split("_")[0]] = _read_labels(data.decode())
            elif name.endswith(".jpg"):
                split, file = name.split("/")[-2:]
                with Image.open(io.BytesIO(data)) as image:
                    images[split][int(file.split(".")[0])] = np.asarray(image.convert("RGB"))
    out = {}
    for split, x_name, y_name in (("train", TRAIN_IMAGES, TRAIN_LABELS), ("val", VAL_IMAGES, VAL_LABELS)):
        order = sorted(images[split])
        out[x_name] = np.stack([images[split][i] for i in order])
        out[y_name] = np.array([labels[split][i] for i in order], dtype=np.uint8)
    return out


def embedded_archive() -> Path:
    return Path(str(resources.files("aeclust.data") / "assets" / ARCHIVE))


def load_embedded() -> ImageSet:
    """The embedded default set, decoded on first use and cached."""
    directory = cache_dir() / f"{EMBEDDED_NAME}-v{CACHE_VERSION}"
    names = (TRAIN_IMAGES, VAL_IMAGES, VAL_LABELS, TRAIN_LABELS)
    if not all((directory / name).is_file() for name in names):
        for name, array in decode_archive(embedded_archive()).items():
            save_npy_atomic(directory / name, array)
    images = load_hw9(directory)
    images.name = EMBEDDED_NAME
    images.source = f"embedded:{EMBEDDED_NAME}"
    images.class_names = list(CLASS_NAMES)
    return images
