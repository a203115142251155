"""Loaders: image folders, archives, .npy/.npz arrays and the HW9 layout, all into one ImageSet form."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import random_images, tiny_config
from PIL import Image

from aeclust.config import RunConfig
from aeclust.data import load_archive, load_array, load_image_folder, load_images
from aeclust.data.pixels import read_image
from aeclust.errors import ConfigError, InputError
from aeclust.pipeline.run import run


def save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def solid(colour, size=(20, 12), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


# -- folders --------------------------------------------------------------------------------------------


def test_every_format_and_mode_becomes_a_32_pixel_rgb_square(tmp_path):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    save(tmp_path / "cat" / "photo.jpg", noise, quality=90)
    save(tmp_path / "cat" / "gray.png", noise.convert("L"))
    save(tmp_path / "cat" / "palette.bmp", noise.convert("P"))
    save(tmp_path / "cat" / "deep" / "sixteen.png", Image.fromarray(rng.integers(0, 65536, (30, 30), dtype=np.uint16)))
    save(tmp_path / "dog" / "alpha.webp", noise.convert("RGBA"))
    save(tmp_path / "dog" / "gray_alpha.png", noise.convert("LA"))
    save(tmp_path / "dog" / "anim.gif", noise.convert("P"), save_all=True, append_images=[solid("blue").convert("P")])
    save(tmp_path / "dog" / "UPPER.JPEG", noise.convert("CMYK"))
    images = load_image_folder(tmp_path)
    assert images.train_images.shape == (8, 32, 32, 3) and images.train_images.dtype == np.uint8
    assert images.train_ids == [
        "cat/deep/sixteen.png", "cat/gray.png", "cat/palette.bmp", "cat/photo.jpg",
        "dog/UPPER.JPEG", "dog/alpha.webp", "dog/anim.gif", "dog/gray_alpha.png",
    ]  # fmt: skip
    assert images.class_names == ["cat", "dog"]
    assert images.train_labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert images.val_images is None


def test_transparent_pixels_are_composited_on_white(tmp_path):
    clear_black = solid((0, 0, 0, 0), mode="RGBA")
    half_red = solid((255, 0, 0, 128), mode="RGBA")
    assert (read_image(encoded(clear_black, "PNG"), 8) == 255).all()
    assert read_image(encoded(half_red, "PNG"), 8)[0, 0].tolist() == [255, 127, 127]
    transparent_palette = solid(3, mode="P")
    transparent_palette.info["transparency"] = 3
    assert (read_image(encoded(transparent_palette, "GIF", transparency=3), 8) == 255).all()


def test_sixteen_bit_values_are_scaled_not_clipped():
    for value, expected in ((0, 0), (257 * 128, 128), (65535, 255)):
        image = Image.fromarray(np.full((10, 10), value, dtype=np.uint16))
        assert (read_image(encoded(image, "PNG"), 8) == expected).all(), value


def test_only_the_first_gif_frame_is_read():
    red, blue = solid("red").convert("P"), solid("blue").convert("P")
    pixels = read_image(encoded(red, "GIF", save_all=True, append_images=[blue]), 8)
    assert pixels[4, 4].tolist() == [255, 0, 0]


def test_exif_orientation_is_honoured():
    # Dark left half, bright right half; EXIF orientation 6 says "turn 90° clockwise to view",
    # which puts the dark half on top.
    array = np.zeros((32, 64, 3), np.uint8)
    array[:, 32:] = 255
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6
    pixels = read_image(encoded(image, "JPEG", exif=exif, quality=95), 32).mean(axis=2)
    assert pixels[:8].mean() < 40 and pixels[-8:].mean() > 215
    assert abs(pixels[:, :8].mean() - pixels[:, -8:].mean()) < 20


def test_any_size_is_centre_cropped_and_resized(tmp_path):
    wide = np.zeros((10, 50, 3), np.uint8)
    wide[:, 15:35] = 255  # a bright centre band; the crop keeps the middle 10×10, all of it bright
    save(tmp_path / "wide.png", Image.fromarray(wide))
    save(tmp_path / "tiny.png", solid("green", size=(1, 1)))
    images = load_images(tmp_path, image_size=16)
    assert images.train_images.shape == (2, 16, 16, 3)
    assert images.train_ids == ["tiny.png", "wide.png"]
    assert (images.train_images[1] > 250).all()
    assert images.train_labels is None and images.class_names is None


def test_corrupt_and_truncated_files_are_skipped_with_a_warning_and_a_count(tmp_path, capsys):
    good = encoded(Image.fromarray(random_images(1, 40)[0]), "JPEG")
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(good)
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "cut.png").write_bytes(encoded(solid("red", (50, 50)), "PNG")[:60])
    (tmp_path / "text.png").write_bytes(b"hello, not a picture")
    images = load_image_folder(tmp_path)
    assert images.train_ids == ["a.jpg", "b.jpg", "c.jpg"]
    err = capsys.readouterr().err
    assert f"aeclust: warning: {tmp_path / 'cut.jpg'}: skipped, not a readable image (image file is truncated" in err
    assert f"{tmp_path / 'text.png'}: skipped, not a readable image (not a JPEG, PNG, WebP, BMP or GIF image)" in err
    summary = f"{tmp_path}: skipped 3 of 6 image files that could not be read; using the other 3"
    assert f"aeclust: warning: {summary}" in err and summary in images.notes


def test_hidden_files_and_other_files_are_ignored_quietly(tmp_path, capsys):
    save(tmp_path / "a.png", solid("red"))
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._a.png").write_bytes(b"\0\5\26\7")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "b.png").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("hello")
    assert load_image_folder(tmp_path).train_ids == ["a.png"]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "files, classes, labels",
    [
        (["a/1.png", "b/2.png"], ["a", "b"], [0, 1]),
        (["top/a/1.png", "top/b/2.png", "top/b/deeper/3.png"], ["a", "b"], [0, 1, 1]),  # a wrapping folder is skipped
        (["only/1.png", "only/2.png"], None, None),  # one folder is no labelling
        (["1.png", "a/2.png", "b/3.png"], None, None),  # some images beside the folders: no labels
    ],
)
def test_sub_folder_names_become_labels(tmp_path, files, classes, labels):
    for file in files:
        save(tmp_path / file, solid("red"))
    images = load_image_folder(tmp_path)
    assert images.train_ids == files
    assert images.class_names == classes
    assert (images.train_labels.tolist() if labels is not None else images.train_labels) == labels


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "expected image files (.bmp, .gif, .jpeg, .jpg, .png, .webp) or a HW9-layout trainX.npy, found an empty folder"),
        (lambda d: (d / "a.txt").write_text("x"), "found none among 1 other file (such as a.txt)"),
        (lambda d: (d / "a.jpg").write_bytes(b"\xff\xd8\xff"), "expected readable images, found 1 image file and none could be read (such as"),
    ],
)
def test_a_folder_with_nothing_readable_is_an_error(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(InputError) as error:
        load_images(tmp_path)
    assert str(error.value).startswith(f"{tmp_path}: expected") and message in str(error.value)


# -- archives -------------------------------------------------------------------------------------------


@pytest.fixture
def pets(tmp_path) -> Path:
    """pets/{cat,dog}/*.png: three images each, distinct colours."""
    for i, colour in enumerate(["red", "orange", "yellow"]):
        save(tmp_path / "pets" / "cat" / f"{i}.png", solid(colour))
    for i, colour in enumerate(["blue", "navy", "teal"]):
        save(tmp_path / "pets" / "dog" / f"{i}.png", solid(colour))
    return tmp_path / "pets"


@pytest.mark.parametrize("suffix, mode", [(".zip", None), (".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_archives_read_like_the_folder_they_hold(pets, suffix, mode):
    archive = pets.parent / f"pets{suffix}"
    if mode is None:
        with zipfile.ZipFile(archive, "w") as out:
            for file in sorted(pets.rglob("*.png")):
                out.write(file, file.relative_to(pets.parent).as_posix())
    else:
        with tarfile.open(archive, mode) as out:
            out.add(pets, arcname="pets")
    folder = load_image_folder(pets)
    packed = load_images(archive)
    np.testing.assert_array_equal(packed.train_images, folder.train_images)
    assert packed.train_ids == ["pets/" + name for name in folder.train_ids]
    assert packed.class_names == ["cat", "dog"] and packed.train_labels.tolist() == folder.train_labels.tolist()
    assert packed.name == "pets" and packed.source == str(archive)


def test_archive_members_outside_the_archive_are_skipped_and_nothing_is_written(tmp_path, capsys):
    png = encoded(solid("red"), "PNG")
    archive = tmp_path / "inner" / "evil.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("../escaped.png", png)
        out.writestr("a/../../escaped2.png", png)
        out.writestr("/absolute/b.png", png)
        out.writestr("win\\c.png", png)
    images = load_archive(archive)
    assert images.train_ids == ["absolute/b.png", "win/c.png"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["evil.zip", "inner"]
    assert "skipped 2 members whose paths leave the archive (such as '../escaped.png')" in capsys.readouterr().err


def test_a_cut_short_tar_gz_keeps_what_came_before(pets, capsys):
    archive = pets.parent / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        out.add(pets, arcname="pets")
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * 0.7)])
    try:
        images = load_archive(archive)
    except InputError as error:  # cut before the first whole image: that is an error, naming the file
        assert str(error).startswith(f"{archive}: expected")
    else:
        assert 1 <= len(images.train_images) < 6
        assert "the archive is damaged or cut short" in capsys.readouterr().err


def test_unreadable_archives_are_named(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"PK\3\4 not really")
    (tmp_path / "b.tar.gz").write_bytes(b"nope" * 200)
    (tmp_path / "c.tar.gz").write_bytes(b"\x1f\x8b\x08 a gzip header, then nothing")
    with pytest.raises(InputError, match=r"a\.zip: expected a \.zip archive of images, could not read it \(File is not a zip file\)"):
        load_images(tmp_path / "a.zip")
    with pytest.raises(InputError, match=r"b\.tar\.gz: expected a tar archive of images .*, found a file that is none of them"):
        load_images(tmp_path / "b.tar.gz")
    with pytest.raises(InputError, match=r"c\.tar\.gz: expected a tar archive of images"):
        load_images(tmp_path / "c.tar.gz")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    with pytest.raises(InputError, match=r"empty\.zip: expected image files .*, found an empty archive$"):
        load_images(tmp_path / "empty.zip")


# -- arrays ---------------------------------------------------------------------------------------------


def test_arrays_in_every_accepted_layout_and_scale(tmp_path):
    images = random_images(4, 32)
    variants = {
        "nhwc.npy": images,
        "nchw.npy": images.transpose(0, 3, 1, 2),
        "unit.npy": images.astype(np.float32) / 255,
        "byte_scale.npy": images.astype(np.float64),
        "int64.npy": images.astype(np.int64),
    }
    for name, array in variants.items():
        np.save(tmp_path / name, array)
        loaded = load_images(tmp_path / name)
        np.testing.assert_array_equal(loaded.train_images, images, err_msg=name)
        assert loaded.name == name[:-4] and loaded.train_ids is None


def test_arrays_of_another_size_are_resized(tmp_path):
    np.save(tmp_path / "big.npy", random_images(3, 64))
    np.save(tmp_path / "odd.npy", np.zeros((3, 20, 30, 3), np.uint8))
    assert load_images(tmp_path / "big.npy").train_images.shape == (3, 32, 32, 3)
    assert load_images(tmp_path / "odd.npy", image_size=24).train_images.shape == (3, 24, 24, 3)
    np.testing.assert_array_equal(load_images(tmp_path / "big.npy", image_size=64).train_images, random_images(3, 64))


def test_npz_with_labels_and_a_val_split(tmp_path, small_set):
    path = tmp_path / "set.npz"
    np.savez(
        path, trainX=small_set.train_images[:50], trainY=small_set.train_labels[:50],
        valX=small_set.val_images[:20], valY=small_set.val_labels[:20],
    )  # fmt: skip
    images = load_images(path)
    assert images.train_images.shape == (50, 32, 32, 3) and images.val_images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(images.train_labels, small_set.train_labels[:50])
    np.savez(tmp_path / "one.npz", whatever=small_set.train_images[:5])
    assert len(load_images(tmp_path / "one.npz").train_images) == 5


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 32, 32), np.uint8), "expected a 4-D array of images (N×H×W×3 or N×3×H×W), found a 3-D array of shape 4×32×32"),
        (np.zeros((2, 4, 32, 32, 3), np.uint8), "expected a 4-D array of images (N×H×W×3 or N×3×H×W), found a 5-D array of shape 2×4×32×32×3"),
        (np.zeros((4, 32, 32, 1), np.uint8), "expected 3 colour channels (N×H×W×3 or N×3×H×W), found shape 4×32×32×1"),
        (np.zeros((4, 4, 32, 32), np.float32), "expected 3 colour channels (N×H×W×3 or N×3×H×W), found shape 4×4×32×32"),
        (np.zeros((0, 32, 32, 3), np.uint8), "expected at least one image, found shape 0×32×32×3"),
        (np.zeros((2, 0, 32, 3), np.uint8), "expected images of at least 1×1 pixels, found shape 2×0×32×3"),
        (np.zeros((2, 8, 8, 3), bool), "expected uint8 or float pixel values, found dtype bool"),
        (np.full((2, 8, 8, 3), 300, np.int16), "expected integer pixel values in [0, 255], found int16 values from 300 to 300"),
        (np.full((2, 8, 8, 3), -0.5), "expected float pixel values in [0, 1] or [0, 255], found values from -0.5 to -0.5"),
    ],
)
def test_bad_arrays_are_named(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(InputError) as error:
        load_images(tmp_path / "x.npy")
    assert str(error.value) == f"{tmp_path / 'x.npy'}: {message}"


def test_nan_and_inf_are_counted_and_located(tmp_path):
    array = np.full((5, 8, 8, 3), 0.5, np.float32)
    array[3, 1, 2, 0] = np.nan
    array[4, 0, 0, 0] = array[4, 0, 0, 1] = -np.inf
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(InputError, match=r"x\.npy: expected finite pixel values, found 1 NaN and 2 inf \(the first in image 3\)$"):
        load_images(tmp_path / "x.npy")


def test_bad_npz_contents_are_named(tmp_path, small_set):
    images = small_set.train_images[:10]
    np.savez(tmp_path / "keys.npz", foo=images, bar=images)
    np.savez(tmp_path / "short.npz", images=images, labels=small_set.train_labels[:9])
    np.savez(tmp_path / "one.npz", images=images, labels=np.ones(10, np.uint8))
    np.savez(tmp_path / "val.npz", images=images, valX=images)
    cases = {
        "keys.npz": "expected the images under one of images, trainX, train_images, x, X, data (or a single array), found foo, bar",
        "short.npz [labels]": "expected 10 labels (one per image), found 9",
        "one.npz [labels]": "expected labels of at least 2 classes, found only class 1",
        "val.npz": "expected valX and valY together, found only one of them",
    }
    for where, message in cases.items():
        with pytest.raises(InputError) as error:
            load_array(tmp_path / where.split()[0])
        assert str(error.value) == f"{tmp_path / where}: {message}"


def test_files_that_are_not_numpy_are_named(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "cut.npy", random_images(10))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:500])
    with pytest.raises(InputError, match=r"junk\.npy: expected a \.npy array of images, found a file starting b'not nu', not numpy's format"):
        load_images(tmp_path / "junk.npy")
    with pytest.raises(InputError, match=r"empty\.npz: expected a \.npz array of images, found an empty file"):
        load_images(tmp_path / "empty.npz")
    with pytest.raises(InputError, match=r"cut\.npy: expected a \.npy array of images, found an unreadable file \(.*\)$"):
        load_images(tmp_path / "cut.npy")


# -- dispatch, HW9, settings ----------------------------------------------------------------------------


def test_hw9_and_embedded_sets_are_resized_to_the_asked_size(small_hw9_dir):
    images = load_images(small_hw9_dir, image_size=16)
    assert images.train_images.shape == (240, 16, 16, 3) and images.val_images.shape == (120, 16, 16, 3)
    assert images.notes[-1] == "resized from 32×32 to 16×16"
    assert load_images(small_hw9_dir).train_images.shape == (240, 32, 32, 3)


@pytest.mark.parametrize("size", [0, 4, 30, -8, 32.0, True])
def test_image_size_must_be_a_multiple_of_8(small_hw9_dir, size):
    with pytest.raises(ConfigError, match=f"image size {size!r}: expected"):
        load_images(small_hw9_dir, image_size=size)


def test_unknown_and_missing_sources_say_what_is_accepted(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    accepted = "a folder of images, a .zip/.tar/.tar.gz archive of one, a .npy/.npz array, a HW9-layout directory"
    with pytest.raises(InputError, match=rf"notes\.txt: expected {accepted}.*, found a \.txt file"):
        load_images(tmp_path / "notes.txt")
    with pytest.raises(InputError, match=rf"nope: no such file or directory; expected {accepted}"):
        load_images(tmp_path / "nope")


def test_image_size_round_trips_through_config_json(tmp_path):
    config = tiny_config()
    config.image_size = 64
    config.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path / "config.json").image_size == 64
    older = {key: value for key, value in config.to_dict().items() if key != "image_size"}
    (tmp_path / "old.json").write_text(json.dumps(older))
    assert RunConfig.load(tmp_path / "old.json").image_size == 32  # run directories from before the option


# -- the pipeline on a folder ---------------------------------------------------------------------------


def test_a_labelled_folder_without_val_runs_and_is_scored_by_its_folders(small_set, tmp_path):
    names = ["vehicle", "animal"]
    for i, (image, label) in enumerate(zip(small_set.train_images[:80], small_set.train_labels[:80])):
        save(tmp_path / "data" / names[label] / f"{i:03d}.png", Image.fromarray(image))
    config = tiny_config(epochs=1)
    config.data = str(tmp_path / "data")
    result = run(config, tmp_path / "run")
    assert "train_accuracy" in result.metrics and "val_accuracy" not in result.metrics
    assert result.metrics["class_names"] == ["animal", "vehicle"]
    assert np.isnan(result.history[0].val_accuracy)
    rows = (tmp_path / "run" / "prediction.csv").read_text().splitlines()
    assert rows[0] == "id,label" and rows[1].startswith("animal/") and len(rows) == 81
