"""Decoded images on disk: a folder or archive is decoded once, in parallel, into one uint8 file that later runs
memory-map instead of decoding again.

A store lives in ``cache_dir()/stores/KEY``, where KEY hashes what the images were decoded from (a folder's listing
of names, sizes and modification times; an archive's bytes) and the image size, so a changed source or another
size gets a store of its own and a stale one is never read. It is built in a folder of its own beside it and
renamed into place only when whole: a build that is killed leaves a partial folder that is never read and is
removed by the next build. A disk that fills up mid-build leaves nothing behind and is reported in one line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aeclust.data.images import ImageSet
from aeclust.errors import InputError

if TYPE_CHECKING:
    from aeclust.data.folder import Rows

# Bump when the decoding or the layout of a store changes, so stores written before are not reused.
STORE_FORMAT = 1
IMAGES_FILE = "images.u8"
ROWS_FILE = "rows.u8"  # rows in the order they were decoded, before they are put in the order of their paths
META_FILE = "meta.json"
PARTIAL_MARK = ".partial-"
COPY_ROWS = 16_384  # rows moved at a time when putting the decoded rows in order


def cache_dir() -> Path:
    """Where decoded data lives: $AECLUST_CACHE, else $XDG_CACHE_HOME/aeclust, else ~/.cache/aeclust."""
    if os.environ.get("AECLUST_CACHE"):
        return Path(os.environ["AECLUST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aeclust"


def stores_dir() -> Path:
    return cache_dir() / "stores"


def folder_key(directory: Path, image_size: int) -> str:
    """A folder's store key: every file's relative path, size and modification time (reading every byte of a
    million images only to learn that nothing changed would cost as much as decoding them)."""
    digest = _new_digest("folder", image_size)
    for folder, subfolders, files in os.walk(directory):
        subfolders.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                status = os.stat(path)
            except OSError:  # a broken link or a file gone since the listing: the decoder skips it too
                continue
            relative = os.path.relpath(path, directory)
            digest.update(f"{relative}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def file_key(path: Path, image_size: int) -> str:
    """An archive's store key: its bytes."""
    digest = _new_digest("file", image_size)
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def _new_digest(kind: str, image_size: int) -> hashlib._Hash:
    return hashlib.sha256(f"aeclust store {STORE_FORMAT} {kind} {image_size}\n".encode())


def open_store(key: str, where: str) -> ImageSet | None:
    """The store ``key`` as an :class:`ImageSet` whose images are memory-mapped, or None when there is no whole,
    consistent one (it is then rebuilt, not trusted)."""
    directory = stores_dir() / key
    try:
        meta = json.loads((directory / META_FILE).read_text())
        count, side = int(meta["count"]), int(meta["image_size"])
        if meta.get("format") != STORE_FORMAT or (directory / IMAGES_FILE).stat().st_size != count * side * side * 3:
            return None
        # Copy-on-write: callers may change the array in memory; the file is never written again.
        images = np.memmap(directory / IMAGES_FILE, dtype=np.uint8, mode="c", shape=(count, side, side, 3))
        labels = meta.get("train_labels")
        return ImageSet(
            name=meta["name"],
            train_images=images,
            train_labels=None if labels is None else np.asarray(labels, dtype=np.int64),
            train_ids=meta["train_ids"],
            class_names=meta.get("class_names"),
            source=where,
            notes=[*meta.get("notes", []), f"decoded images read from the store {directory}"],
        )
    except (OSError, ValueError, KeyError, TypeError, InputError):
        return None


class StoreWriter:
    """Takes decoded rows one by one onto disk, then publishes them as a whole store, or leaves nothing."""

    def __init__(self, key: str, image_size: int, where: str) -> None:
        self.key, self.image_size, self.where = key, image_size, where
        self.final = stores_dir() / key
        self.partial = stores_dir() / f"{key}{PARTIAL_MARK}{os.getpid()}"
        self.count = 0
        self._file = None

    def __enter__(self) -> StoreWriter:
        remove_abandoned(self.key)
        try:
            self.partial.mkdir(parents=True, exist_ok=False)
            self._file = open(self.partial / ROWS_FILE, "wb")
        except OSError as error:
            self._discard()
            raise self._failure(error) from None
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is not None:
            self._discard()
            if isinstance(error, OSError) and not isinstance(error, InputError):
                raise self._failure(error) from None

    def append(self, row: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(row, dtype=np.uint8).tobytes())
        self.count += 1

    def finish(self, order: Sequence[int]) -> np.ndarray:
        """Put the rows in ``order`` (row i of the result is decoded row order[i]) in the store's images file, and
        return them memory-mapped."""
        self._file.close()
        shape = (len(order), self.image_size, self.image_size, 3)
        rows_path, images_path = self.partial / ROWS_FILE, self.partial / IMAGES_FILE
        order = np.asarray(order, dtype=np.int64)
        if len(order) == self.count and np.array_equal(order, np.arange(self.count)):
            os.replace(rows_path, images_path)
        else:
            decoded = np.memmap(rows_path, dtype=np.uint8, mode="r", shape=(self.count, *shape[1:]))
            ordered = np.memmap(images_path, dtype=np.uint8, mode="w+", shape=shape)
            for start in range(0, len(order), COPY_ROWS):
                ordered[start : start + COPY_ROWS] = decoded[order[start : start + COPY_ROWS]]
            ordered.flush()
            del decoded, ordered
            rows_path.unlink()
        _fsync(images_path)
        return np.memmap(images_path, dtype=np.uint8, mode="c", shape=shape)

    def publish(self, images: ImageSet) -> ImageSet:
        """Write the store's description and move it into place; return ``images`` read back from the store."""
        meta = {
            "format": STORE_FORMAT,
            "count": len(images.train_images),
            "image_size": self.image_size,
            "name": images.name,
            "source": self.where,
            "built": time.strftime("%Y-%m-%d %H:%M:%S"),
            "train_ids": images.train_ids,
            "train_labels": None if images.train_labels is None else images.train_labels.tolist(),
            "class_names": images.class_names,
            "notes": images.notes,
        }
        meta_path = self.partial / META_FILE
        meta_path.write_text(json.dumps(meta))
        _fsync(meta_path)
        try:
            os.rename(self.partial, self.final)
        except OSError:  # a store is there already
            if open_store(self.key, self.where) is not None:  # another process (torchrun's) published it first
                self._discard()
            else:  # the damaged one this build replaces
                shutil.rmtree(self.final)
                os.rename(self.partial, self.final)
        stored = open_store(self.key, self.where)
        if stored is None:
            raise InputError(f"{self.final}: the store just written could not be read back; remove it and run again")
        return stored

    def _discard(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        shutil.rmtree(self.partial, ignore_errors=True)

    def _failure(self, error: OSError) -> InputError:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return InputError(
                f"{stores_dir()}: the disk filled up while decoding {self.where} into a store; nothing was kept "
                "and no other file was changed (free some space, or set AECLUST_CACHE to a folder on a larger disk)"
            )
        return InputError(f"{stores_dir()}: could not write the decoded images of {self.where} there ({error})")


def decode_through_store(
    key: Callable[[], str], where: str, image_size: int, decode: Callable[["Rows | None"], ImageSet], store: bool
) -> ImageSet:
    """``decode``'s images, from the store ``key()`` names when there is a whole one, else decoded into it (or, with
    ``store`` False, into memory, and nothing is written)."""
    if not store:
        return decode(None)
    name = key()
    stored = open_store(name, where)
    if stored is not None:
        return stored
    with StoreWriter(name, image_size, where) as writer:
        return writer.publish(decode(writer))


def remove_abandoned(key: str) -> None:
    """Remove partial stores of ``key`` whose builder is gone (killed mid-build)."""
    for partial in stores_dir().glob(f"{key}{PARTIAL_MARK}*"):
        pid = partial.name.rsplit(PARTIAL_MARK, 1)[1]
        if not pid.isdigit() or not _is_running(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _is_running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a folder of ours from before is from a run that stopped; this process is starting afresh
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


