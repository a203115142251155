"""The decoded store: folders and archives are decoded once onto disk, bit for bit as in memory, and read back
memory-mapped; a changed source, a killed build, a damaged store or a full disk never yield a wrong set."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import random_images
from PIL import Image

import aeclust.data.folder as folder_module
from aeclust.cli import main
from aeclust.data import load_images
from aeclust.data.store import IMAGES_FILE, PARTIAL_MARK, StoreWriter, stores_dir
from aeclust.errors import InputError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AECLUST_CACHE", str(tmp_path / "cache"))


def write_folder(root: Path, count: int = 30, side: int = 40, seed: int = 0) -> Path:
    """Images of two classes in sub-folders (PNG and JPEG, not square, so they are cropped and resized), one
    unreadable file and one hidden file."""
    pixels = random_images(count, side, seed)
    for index, image in enumerate(pixels):
        folder = root / ("cat" if index % 3 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "png" if index % 2 else "jpg"
        Image.fromarray(image[:, : side - 6]).save(folder / f"{index:03d}.{suffix}")
    (root / "cat" / "broken.jpg").write_bytes(b"not an image")
    (root / "dog" / ".hidden.png").write_bytes(b"")
    return root


def assert_same_set(first, second) -> None:
    assert np.array_equal(np.asarray(first.train_images), np.asarray(second.train_images))
    assert first.train_images.dtype == second.train_images.dtype == np.uint8
    assert first.train_ids == second.train_ids
    assert np.array_equal(first.train_labels, second.train_labels) and first.class_names == second.class_names


def refuse_to_decode(monkeypatch) -> None:
    def decode(*args):
        raise AssertionError("decoded again instead of reading the store")

    monkeypatch.setattr(folder_module, "read_image", decode)


def test_a_folder_is_decoded_once_bit_for_bit_as_in_memory_then_read_back_from_the_store(tmp_path, monkeypatch):
    source = write_folder(tmp_path / "pets")
    in_memory = load_images(source, image_size=16, store=False)
    assert not stores_dir().exists()  # store=False writes nothing
    built = load_images(source, image_size=16)
    assert_same_set(built, in_memory)
    assert isinstance(built.train_images, np.memmap) and len(built.train_images) == 30
    assert any("skipped 1 of 31" in note for note in built.notes)
    refuse_to_decode(monkeypatch)
    reused = load_images(source, image_size=16)
    assert_same_set(reused, in_memory)
    assert any("read from the store" in note for note in reused.notes)
    assert len(list(stores_dir().iterdir())) == 1


def test_an_archive_in_any_member_order_is_stored_in_path_order(tmp_path, monkeypatch):
    source = write_folder(tmp_path / "pets")
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # members reversed: the store must put them back in path order
        for path in sorted(source.rglob("*"), reverse=True):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(tmp_path)))
    in_memory = load_images(archive, store=False)
    assert_same_set(load_images(archive), in_memory)
    assert in_memory.train_ids == sorted(in_memory.train_ids)
    refuse_to_decode(monkeypatch)
    assert_same_set(load_images(archive), in_memory)


def test_decoding_in_a_pool_of_processes_gives_the_same_images(tmp_path, monkeypatch):
    source = write_folder(tmp_path / "pets", count=50)
    in_memory = load_images(source, store=False)
    monkeypatch.setattr(folder_module, "DECODE_BATCH", 8)  # 7 batches, decoded by a pool from the first full one
    monkeypatch.setattr(folder_module, "decoder_count", lambda: 2)
    pools = []
    real_context = folder_module.multiprocessing.get_context
    monkeypatch.setattr(
        folder_module.multiprocessing, "get_context", lambda method: pools.append(method) or real_context(method)
    )
    assert_same_set(load_images(source, store=False), in_memory)
    assert pools, "the pool was not used"


def test_a_changed_source_gets_a_new_store_and_the_old_one_is_left_alone(tmp_path):
    source = write_folder(tmp_path / "pets")
    first = load_images(source)
    (old_store,) = stores_dir().iterdir()
    before = (old_store / IMAGES_FILE).read_bytes()
    replacement = random_images(1, 40, seed=9)[0]
    Image.fromarray(replacement).save(source / "cat" / "001.png")
    os.utime(source / "cat" / "001.png", ns=(1, 1))  # a different modification time, whatever the clock says
    changed = load_images(source)
    assert_same_set(changed, load_images(source, store=False))
    assert not np.array_equal(np.asarray(changed.train_images), np.asarray(first.train_images))
    assert len(list(stores_dir().iterdir())) == 2 and (old_store / IMAGES_FILE).read_bytes() == before
    assert len(list(stores_dir().glob(f"*{PARTIAL_MARK}*"))) == 0


def test_another_image_size_gets_its_own_store(tmp_path):
    source = write_folder(tmp_path / "pets")
    assert load_images(source, image_size=16).image_size == 16
    assert load_images(source, image_size=32).image_size == 32
    assert len(list(stores_dir().iterdir())) == 2


def test_a_damaged_store_is_rebuilt_not_trusted(tmp_path):
    source = write_folder(tmp_path / "pets")
    expected = load_images(source, store=False)
    load_images(source)
    (store,) = stores_dir().iterdir()
    with open(store / IMAGES_FILE, "r+b") as file:
        file.truncate(100)  # cut short
    assert_same_set(load_images(source), expected)
    (store / "meta.json").write_text("{not json")
    assert_same_set(load_images(source), expected)


def test_a_build_killed_midway_is_never_read_and_is_cleared_by_the_next(tmp_path):
    source = write_folder(tmp_path / "pets")
    script = f"""
import os, signal
import aeclust.data.folder as folder
from aeclust.data import load_images
decoded = []
real = folder.read_image
def read_then_die(*args):
    decoded.append(1)
    if len(decoded) == 10:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args)
folder.read_image = read_then_die
load_images({str(source)!r})
"""
    killed = subprocess.run(
        [sys.executable, "-c", script], env=os.environ | {"AECLUST_CACHE": str(stores_dir().parent)}
    )
    assert killed.returncode == -9
    (partial,) = stores_dir().iterdir()
    assert PARTIAL_MARK in partial.name and (partial / "rows.u8").is_file()
    assert_same_set(load_images(source), load_images(source, store=False))
    assert [path.name for path in stores_dir().iterdir()] == [partial.name.split(PARTIAL_MARK)[0]]


def test_an_error_midway_leaves_no_store_behind(tmp_path, monkeypatch):
    source = write_folder(tmp_path / "pets")
    real = folder_module.read_image
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(folder_module, "read_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_images(source)
    assert list(stores_dir().iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_every_file_as_it_was(tmp_path, monkeypatch, capsys):
    source = write_folder(tmp_path / "pets")
    other = write_folder(tmp_path / "other", seed=3)
    load_images(other)  # an older store of another source
    (old_store,) = stores_dir().iterdir()
    old_bytes = (old_store / IMAGES_FILE).read_bytes()
    source_files = {path: path.read_bytes() for path in source.rglob("*") if path.is_file()}
    real_append = StoreWriter.append

    def append_until_full(self, row):
        if self.count == 7:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(self, row)

    monkeypatch.setattr(StoreWriter, "append", append_until_full)
    with pytest.raises(InputError, match="the disk filled up while decoding"):
        load_images(source)
    capsys.readouterr()
    assert main(["run", "--data", str(source), "--out", str(tmp_path / "runs" / "one")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "disk filled up" in error[0] and "AECLUST_CACHE" in error[0]
    assert not (tmp_path / "runs").exists()
    assert list(stores_dir().iterdir()) == [old_store] and (old_store / IMAGES_FILE).read_bytes() == old_bytes
    assert {path: path.read_bytes() for path in source.rglob("*") if path.is_file()} == source_files


def resident_kb(path: Path) -> int:
    """How much of the file at ``path``, mapped into this process, is resident (Linux's /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0]:  # a mapping's header: address range, permissions, ..., path
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")
def test_pages_read_from_a_store_stop_counting_as_resident_memory_once_released(tmp_path):
    from aeclust.runtime.io import release_pages

    source = write_folder(tmp_path / "pets", count=60, side=32)
    images = load_images(source, image_size=64).train_images  # 60 × 12 KB
    (store,) = stores_dir().iterdir()
    expected = np.array(images)  # every page read (into a copy that is not mapped)
    assert resident_kb(store / IMAGES_FILE) >= 600
    release_pages(images[10:20])  # a slice shares the store's mapping: the whole of it is released
    assert resident_kb(store / IMAGES_FILE) < 100
    assert np.array_equal(np.asarray(images), expected)  # and reads back the same
    release_pages(np.zeros(3))  # not memory-mapped: nothing to do


def test_an_archive_holding_one_path_twice_keeps_its_last_copy_in_memory_and_in_the_store(tmp_path):
    import io

    first, second = random_images(2, 16, seed=5)
    archive = tmp_path / "twice.tar"
    with tarfile.open(archive, "w") as tar:
        for name, pixels in (("a/x.png", first), ("b/y.png", first), ("a/x.png", second)):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            info = tarfile.TarInfo(name)
            info.size = len(buffer.getvalue())
            tar.addfile(info, io.BytesIO(buffer.getvalue()))
    in_memory = load_images(archive, image_size=16, store=False)
    assert in_memory.train_ids == ["a/x.png", "b/y.png"]
    assert np.array_equal(in_memory.train_images[0], second)
    assert_same_set(load_images(archive, image_size=16), in_memory)


def test_decoding_a_folder_says_how_many_images_are_left(tmp_path, capsys, monkeypatch):
    import aeclust.runtime.progress

    monkeypatch.setattr(aeclust.runtime.progress, "LOG_INTERVAL", 0.0)  # a line for every batch decoded
    monkeypatch.setattr(folder_module, "DECODE_BATCH", 10)
    folder = write_folder(tmp_path / "pets", count=30)
    (folder / "notes.txt").write_text("not an image name: not counted")
    load_images(folder, store=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("aeclust: decoding ")]
    assert lines and all(" of 31 images " in line for line in lines)  # the unreadable one counts as read
    assert "31 of 31 images (100 %)" in lines[-1]
