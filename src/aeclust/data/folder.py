"""A folder of image files, searched recursively, with sub-folder names as labels (the ImageFolder convention).

Sub-folder labels are an answer key like ``trainY.npy``: they score the clustering and never train it.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

import numpy as np

from aeclust.data.images import ImageSet
from aeclust.data.pixels import IMAGE_EXTENSIONS, UnreadableImageError, is_image_name, read_image
from aeclust.data.store import decode_through_store, folder_key
from aeclust.errors import InputError
from aeclust.runtime.progress import Progress

# Skipped files are named one by one up to this many; past it they are only counted, so a folder of
# ten thousand broken files does not bury the terminal.
MAX_LISTED = 10

# A file found in a folder or archive: its path relative to the top, and how to get its contents.
FileEntry = tuple[PurePosixPath, Callable[[], "str | os.PathLike | bytes"]]

# Images are read this many at a time (an archive's members in the main process, as a tar can only be read in
# order), then decoded by a pool of processes; small sets, under one batch, are decoded in this process.
DECODE_BATCH = 2048
MAX_DECODERS = 8


class Rows(Protocol):
    """Where decoded images go, one at a time, until they are put in order."""

    def append(self, row: np.ndarray) -> None: ...

    def finish(self, order: Sequence[int]) -> np.ndarray: ...


class MemoryRows:
    """Decoded images kept in memory."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def append(self, row: np.ndarray) -> None:
        self.rows.append(row)

    def finish(self, order: Sequence[int]) -> np.ndarray:
        return np.stack([self.rows[i] for i in order])


def _decode(task: tuple[str | os.PathLike | bytes | UnreadableImageError, int]) -> np.ndarray | str:
    """One image, or why it could not be read (a pool worker's task: errors travel back as text)."""
    source, size = task
    if isinstance(source, UnreadableImageError):
        return str(source)
    try:
        return read_image(source, size)
    except UnreadableImageError as error:
        return str(error)


def decoder_count() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_DECODERS))


def decode_entries(
    entries: Iterable[FileEntry], image_size: int, where: str, total: int | None = None
) -> Iterator[tuple[PurePosixPath, np.ndarray | str]]:
    """Each entry's image, or why it could not be read, in the entries' order, with a progress bar (of ``total``
    images, where it is known)."""
    workers, pool = decoder_count(), None
    progress = Progress(total, f"decoding {where}", "image")
    try:
        iterator = iter(entries)
        while batch := list(itertools.islice(iterator, DECODE_BATCH)):
            tasks = []
            for _, contents in batch:
                try:
                    tasks.append((contents(), image_size))
                except UnreadableImageError as error:
                    tasks.append((error, image_size))
            if pool is None and workers > 1 and len(batch) == DECODE_BATCH:
                # fork where there is one: the workers need nothing but Pillow, and start in milliseconds
                method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
                pool = multiprocessing.get_context(method).Pool(workers)
            results = pool.map(_decode, tasks, chunksize=64) if pool is not None else [_decode(task) for task in tasks]
            for (relative, _), result in zip(batch, results):
                yield relative, result
            progress.update(len(batch))
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()


def warn(message: str) -> None:
    print(f"aeclust: warning: {message}", file=sys.stderr, flush=True)


def is_hidden(relative: PurePosixPath) -> bool:
    """Hidden files and macOS metadata (``.DS_Store``, ``__MACOSX/._cat.jpg``) are never part of an image set."""
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)


def folder_classes(paths: list[PurePosixPath]) -> list[str | None]:
    """Each path's class: its first folder below the folders all paths share (None for a path at that level).

    Skipping the shared folders lets an archive that wraps everything in one top folder (``pets/cat/1.jpg``,
    ``pets/dog/2.jpg``) give the classes ``cat`` and ``dog``, as the unwrapped folder would.
    """
    folders = [path.parts[:-1] for path in paths]
    shortest, shared = min(len(parts) for parts in folders), 0
    while shared < shortest and len({parts[shared] for parts in folders}) == 1:
        shared += 1
    return [parts[shared] if len(parts) > shared else None for parts in folders]


def images_from_files(
    entries: Iterable[FileEntry],
    *,
    where: str,
    name: str,
    image_size: int,
    describe: Callable[[PurePosixPath], str],
    kind: str = "folder",
    notes: list[str] | None = None,
    rows: Rows | None = None,
    total: int | None = None,
) -> ImageSet:
    """Decode every image among ``entries`` into an :class:`ImageSet`, skipping unreadable ones with a warning.

    ``describe`` names one file in messages and ``kind`` the whole ("folder" or "archive"); ``notes`` holds
    remarks made already (a damaged archive, say). Rows are ordered by relative path; each row's id is that path.
    Decoded images go to ``rows`` (in memory by default; a :class:`StoreWriter` puts them on disk). ``total``:
    how many image files there are, where it is known beforehand, for the progress bar.
    """
    notes = notes if notes is not None else []
    rows = rows if rows is not None else MemoryRows()
    decoded: dict[PurePosixPath, int] = {}  # each image's row; a path met twice (an archive may) keeps its last
    unreadable: dict[PurePosixPath, str] = {}
    other_files: list[PurePosixPath] = []

    def image_entries() -> Iterator[FileEntry]:
        for relative, contents in entries:
            if is_hidden(relative) or not is_image_name(relative.name):
                other_files.append(relative)
            else:
                yield relative, contents

    rows_written = 0
    for relative, result in decode_entries(image_entries(), image_size, where, total):
        if isinstance(result, str):
            unreadable[relative] = result
        else:
            decoded[relative] = rows_written
            rows.append(result)
            rows_written += 1

    if not decoded:
        raise _nothing_readable(where, kind, unreadable, other_files, describe)
    if unreadable:
        for relative, reason in list(unreadable.items())[:MAX_LISTED]:
            warn(f"{describe(relative)}: skipped, not a readable image ({reason})")
        summary = (
            f"{where}: skipped {len(unreadable)} of {len(unreadable) + len(decoded)} image files that could not "
            f"be read; using the other {len(decoded)}"
        )
        warn(summary)
        notes.append(summary)

    paths = sorted(decoded)
    order = [decoded[path] for path in paths]
    train_labels = class_names = None
    classes = folder_classes(paths)
    if None in classes and set(classes) != {None}:
        note = f"{where}: some images sit beside the sub-folders, not in one, so folder names are not used as labels"
        warn(note)
        notes.append(note)
    elif None not in classes and len(set(classes)) >= 2:
        class_names = sorted(set(classes))
        index = {name: i for i, name in enumerate(class_names)}
        train_labels = np.array([index[c] for c in classes], dtype=np.int64)
        notes.append(f"labels (for scoring only) from {len(class_names)} sub-folders: {', '.join(class_names)}")
    return ImageSet(
        name=name,
        train_images=rows.finish(order),
        train_labels=train_labels,
        train_ids=[str(path) for path in paths],
        class_names=class_names,
        source=where,
        notes=notes,
    )


def _nothing_readable(
    where: str,
    kind: str,
    unreadable: dict[PurePosixPath, str],
    other_files: list[PurePosixPath],
    describe: Callable[[PurePosixPath], str],
) -> InputError:
    expected = f"expected image files ({', '.join(IMAGE_EXTENSIONS)})"
    if kind == "folder":
        expected += " or a HW9-layout trainX.npy"
    if unreadable:
        first, reason = next(iter(unreadable.items()))
        return InputError(
            f"{where}: expected readable images, found {_count(len(unreadable), 'image file')} and none could be "
            f"read (such as {describe(first)}: {reason})"
        )
    if other_files:
        return InputError(
            f"{where}: {expected}, found none among {_count(len(other_files), 'other file')} (such as {other_files[0]})"
        )
    return InputError(f"{where}: {expected}, found an empty {kind}")


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _walk(directory: Path, warn_unreadable: bool = True) -> Iterator[FileEntry]:
    """Every file below ``directory`` in sorted order, not descending into hidden folders or symlinked ones."""

    def unreadable_folder(error: OSError) -> None:
        if warn_unreadable:
            warn(f"{error.filename}: skipped, folder cannot be read ({error.strerror})")

    for folder, subfolders, files in os.walk(directory, onerror=unreadable_folder):
        subfolders[:] = sorted(s for s in subfolders if not s.startswith(".") and s != "__MACOSX")
        for file in sorted(files):
            path = Path(folder, file)
            yield PurePosixPath(path.relative_to(directory).as_posix()), (lambda path=path: path)


def load_image_folder(directory: str | os.PathLike, image_size: int = 32, store: bool = True) -> ImageSet:
    """Every image below ``directory`` (JPEG, PNG, WebP, BMP, the first frame of a GIF), as image_size squares.

    Sub-folder names become ``train_labels`` and ``class_names`` when every image sits in one (ImageFolder);
    they are for scoring only. Each row's id is the image's path relative to ``directory``. With ``store``, the
    images are decoded once into a store on disk (:mod:`aeclust.data.store`) that later loads memory-map.
    """
    directory = Path(directory)
    if not directory.is_dir():
        found = "a file" if directory.exists() else "nothing"
        raise InputError(f"{directory}: expected a folder of images, found {found}")

    def decode(rows: Rows | None) -> ImageSet:
        # A folder, unlike an archive, can be listed before decoding (seconds for a million files), so the bar
        # can say how much is left.
        listing = _walk(directory, warn_unreadable=False)  # the decoding walk says what it cannot read
        total = sum(not is_hidden(relative) and is_image_name(relative.name) for relative, _ in listing)
        return images_from_files(
            _walk(directory),
            where=str(directory),
            name=directory.resolve().name,
            image_size=image_size,
            describe=lambda relative: str(directory / relative),
            rows=rows,
            total=total,
        )

    return decode_through_store(lambda: folder_key(directory, image_size), str(directory), image_size, decode, store)
