"""Atomic writes: every file aeclust makes appears whole or not at all (a temp file, then a rename)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from aeclust.config import FORMAT_VERSION
from aeclust.errors import CheckpointError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success, fsync it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
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


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def torch_save_atomic(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def load_checked(path: str | os.PathLike, kind: str, description: str) -> dict:
    """Load a torch checkpoint of the given ``kind`` and this aeclust's format version, or say plainly why not.

    ``description`` names the file in errors, e.g. "an aeclust checkpoint".
    """
    import torch

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
