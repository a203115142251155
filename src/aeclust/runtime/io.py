"""Files: atomic writes (every file aeclust makes appears whole or not at all: a temp file, then a rename), checked
checkpoint loading, and letting go of memory-mapped pages once read."""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from aeclust.errors import CheckpointError
from aeclust.format_version import FORMAT_VERSION


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
COPY_BUFFER = 16 * 2**20  # bytes read at a time when copying a file


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new empty file beside ``path``, named as :func:`remove_stale_temporaries` finds it; its descriptor and name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
    return fd, tmp


def temporary_beside(path: str | os.PathLike) -> Path:
    """A new empty temporary file beside ``path``, for a writer that needs a name (a memory-mapped array) rather
    than a handle; the caller renames it over ``path`` when whole, or removes it."""
    fd, tmp = _temporary_beside(Path(path))
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success, fsync it and rename it over ``path``."""
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed process left half-written in ``directory``; return them."""
    stale = sorted(Path(directory).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def copy_file_atomic(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy ``source`` to ``target`` through a temporary file, so ``target`` is never seen half-written."""
    with open(source, "rb") as reader, atomic_open(target, "wb") as writer:
        shutil.copyfileobj(reader, writer, COPY_BUFFER)


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def torch_save_atomic(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


RELEASE_EVERY = 64  # batches read from a store between two calls of release_pages


class PageReleaser:
    """Releases the pages of ``images`` (see :func:`release_pages`) once every :data:`RELEASE_EVERY` batches read."""

    def __init__(self, images: np.ndarray) -> None:
        self.images, self.batches = images, 0

    def batch_read(self) -> None:
        self.batches += 1
        if self.batches % RELEASE_EVERY == 0:
            release_pages(self.images)


def release_pages(images: np.ndarray) -> None:
    """Let the kernel drop the pages of a memory-mapped store this process has read.

    They stay in the page cache, so the next read of them is as fast, but they stop counting in this process's
    resident memory: without this, one pass over a million images leaves 3 GB of them resident. Arrays that are
    not memory-mapped are left alone.
    """
    mapping = getattr(images, "_mmap", None)  # numpy's memmap (and every slice of it) keeps its mmap here
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mapping.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # a closed mapping, or a system that refuses: only memory is at stake
            pass


def load_checked(path: str | os.PathLike[str], kind: str, description: str) -> dict:
    """Load a torch checkpoint of the given ``kind`` and this aeclust's format version, or say plainly why not.

    ``description`` names the file in errors, e.g. "an aeclust checkpoint".
    """
    import torch  # loaded on first use, so that reading a run's other files does not wait for torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: expected {description}, could not read it ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise CheckpointError(f"{path}: expected {description}, found another kind of file")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('format_version')}; this aeclust reads version {FORMAT_VERSION}"
        )
    return state
