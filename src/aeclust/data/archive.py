"""``.zip``, ``.tar`` and ``.tar.gz`` archives of image folders, read member by member in memory.

Nothing is extracted, so a member named ``../../etc/x.png`` or ``/etc/x.png`` cannot write anywhere; such
names are still skipped (with a warning), because they cannot be a path inside the archive's folder.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from aeclust.data.folder import FileEntry, Rows, images_from_files, warn
from aeclust.data.images import ImageSet
from aeclust.data.pixels import UnreadableImageError, one_line
from aeclust.data.store import decode_through_store, file_key
from aeclust.errors import InputError

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# No image aeclust could use is this large; a bigger member is a damaged header or a zip bomb.
MAX_MEMBER_BYTES = 512 * 2**20
# What the standard library raises for damaged archives, between them.
ARCHIVE_ERRORS = (
    tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError,
)  # fmt: skip


def is_archive_name(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ZIP_SUFFIXES + TAR_SUFFIXES)


def archive_stem(path: Path) -> str:
    """``pets.tar.gz`` → ``pets``."""
    lowered = path.name.lower()
    for suffix in ZIP_SUFFIXES + TAR_SUFFIXES:
        if lowered.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def member_path(name: str) -> PurePosixPath | None:
    """A member's path inside the archive, or None for one that climbs out of it (``..``)."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _too_large(size: int) -> UnreadableImageError:
    return UnreadableImageError(f"{size} bytes, more than the {MAX_MEMBER_BYTES} an image may have")


def _zip_entries(archive: zipfile.ZipFile, unsafe: list[str]) -> Iterator[FileEntry]:
    def read(info: zipfile.ZipInfo) -> bytes:
        if info.file_size > MAX_MEMBER_BYTES:
            raise _too_large(info.file_size)
        try:
            return archive.read(info)
        except ARCHIVE_ERRORS as error:  # a bad CRC, an encrypted member, an unknown compression method
            raise UnreadableImageError(one_line(error)) from None

    for info in archive.infolist():
        if info.is_dir():
            continue
        relative = member_path(info.filename)
        if relative is None:
            unsafe.append(info.filename)
            continue
        yield relative, (lambda info=info: read(info))


def _tar_entries(archive: tarfile.TarFile, where: str, unsafe: list[str], notes: list[str]) -> Iterator[FileEntry]:
    def read(member: tarfile.TarInfo) -> bytes:
        if member.size > MAX_MEMBER_BYTES:
            raise _too_large(member.size)
        try:
            return archive.extractfile(member).read()
        except ARCHIVE_ERRORS as error:
            raise UnreadableImageError(one_line(error)) from None

    seen = 0
    try:
        # Members are read in archive order, one pass: a .tar.gz cannot seek back without decompressing again.
        for member in archive:
            seen += 1
            if not member.isfile():  # directories, and links (which would point outside the member's data)
                continue
            relative = member_path(member.name)
            if relative is None:
                unsafe.append(member.name)
                continue
            yield relative, (lambda member=member: read(member))
    except ARCHIVE_ERRORS as error:
        note = f"{where}: the archive is damaged or cut short after {seen} members ({one_line(error)}); using those"
        warn(note)
        notes.append(note)


def load_archive(path: str | os.PathLike, image_size: int = 32, store: bool = True) -> ImageSet:
    """The images in a .zip, .tar or .tar.gz archive, laid out as a folder would be (see ``load_image_folder``).

    Each row's id is the member's path inside the archive. With ``store``, the images are decoded once into a
    store on disk (:mod:`aeclust.data.store`), keyed by the archive's bytes, that later loads memory-map.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(f"{where}: expected an archive of images, found {'a folder' if path.exists() else 'nothing'}")
    return decode_through_store(
        lambda: file_key(path, image_size),
        where,
        image_size,
        lambda rows: _decode_archive(path, image_size, rows),
        store,
    )


def _decode_archive(path: Path, image_size: int, rows: Rows | None) -> ImageSet:
    where = str(path)
    unsafe: list[str] = []
    notes: list[str] = []
    is_zip = path.name.lower().endswith(ZIP_SUFFIXES)
    kind = "a .zip archive" if is_zip else "a tar archive"
    try:
        archive = zipfile.ZipFile(path) if is_zip else tarfile.open(path, "r:*")
    except tarfile.ReadError:  # its message lists every compression tried, over five lines
        raise InputError(
            f"{where}: expected a tar archive of images (.tar, .tar.gz, .tar.bz2, .tar.xz), "
            "found a file that is none of them"
        ) from None
    except ARCHIVE_ERRORS as error:
        raise InputError(f"{where}: expected {kind} of images, could not read it ({one_line(error)})") from None
    with archive:
        entries = _zip_entries(archive, unsafe) if is_zip else _tar_entries(archive, where, unsafe, notes)
        try:
            images = images_from_files(
                entries,
                where=where,
                name=archive_stem(path),
                image_size=image_size,
                describe=lambda relative: f"{where}: {relative}",
                kind="archive",
                notes=notes,
                rows=rows,
            )
        except InputError as error:
            if not unsafe:
                raise
            raise InputError(
                f"{error}; also skipped {len(unsafe)} members whose paths leave the archive (such as {unsafe[0]!r})"
            ) from None
    if unsafe:
        note = f"{where}: skipped {len(unsafe)} members whose paths leave the archive (such as {unsafe[0]!r})"
        warn(note)
        images.notes.append(note)
    return images
