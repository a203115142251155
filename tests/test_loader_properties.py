"""Property-based tests of the loaders: random shapes, dtypes, modes, formats and corruptions.

Each property says what must hold for every input: a loader returns N×size×size×3 uint8 images or raises
InputError naming the file; it never fails any other way. Examples are few, so the suite stays quick.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from aeclust.data import load_images
from aeclust.data.archive import member_path
from aeclust.data.arrays import to_uint8_images
from aeclust.data.pixels import UnreadableImageError, read_image
from aeclust.errors import InputError

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (format, mode) pairs Pillow can write: every kind of file a user may bring.
WRITABLE = [
    ("JPEG", "RGB"), ("JPEG", "L"), ("JPEG", "CMYK"),
    ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "LA"), ("PNG", "P"), ("PNG", "1"), ("PNG", "I;16"),
    ("BMP", "RGB"), ("BMP", "L"), ("BMP", "P"), ("BMP", "1"),
    ("GIF", "P"), ("GIF", "L"),
    ("WEBP", "RGB"), ("WEBP", "RGBA"),
]  # fmt: skip
EXTENSION = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "GIF": "gif", "WEBP": "webp"}
sizes = st.sampled_from([8, 16, 32])


@st.composite
def image_files(draw) -> tuple[str, bytes]:
    """An encoded image of a random kind and size: (extension, bytes)."""
    format, mode = draw(st.sampled_from(WRITABLE))
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    if mode == "I;16":
        image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    else:
        image = Image.fromarray(pixels, "RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format)
    return EXTENSION[format], buffer.getvalue()


@st.composite
def corrupted(draw, data: bytes) -> bytes:
    """``data`` damaged one way or another: cut short, bytes flipped, garbage inserted or all garbage."""
    how = draw(st.sampled_from(["cut", "flip", "insert", "garbage"]))
    if how == "cut":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "garbage":
        return draw(st.binary(max_size=200))
    damaged = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(damaged)))
        if how == "flip" and at < len(damaged):
            damaged[at] ^= draw(st.integers(1, 255))
        else:
            damaged[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(damaged)


@FEW
@given(file=image_files(), size=sizes)
def test_every_readable_kind_of_image_becomes_an_rgb_square(file, size):
    _, data = file
    pixels = read_image(data, size)
    assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8


@settings(max_examples=40, deadline=None)
@given(data=st.data(), size=sizes)
def test_a_damaged_image_is_read_or_refused_never_anything_else(data, size):
    _, clean = data.draw(image_files())
    damaged = data.draw(corrupted(clean))
    try:
        pixels = read_image(damaged, size)
    except UnreadableImageError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8


@FEW
@given(
    good=st.lists(image_files(), max_size=4),
    bad=st.lists(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"junk"]), max_size=3),
    folders=st.lists(st.sampled_from(["", "a/", "b/", "a/deep/"]), min_size=7, max_size=7),
)
def test_a_folder_loads_every_good_file_and_skips_every_bad_one(good, bad, folders):
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        files = [(ext, data) for ext, data in good] + [("png", data) for data in bad]
        for i, (extension, data) in enumerate(files):
            path = root / f"{folders[i]}{i}.{extension}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            images = load_images(root)
        except InputError as error:
            assert not good and str(error).startswith(f"{root}: expected")
        else:
            assert len(images.train_images) == len(good) and len(images.train_ids) == len(good)
            assert images.train_images.shape[1:] == (32, 32, 3)
            if bad:
                assert f"skipped {len(bad)} of {len(files)} image files" in images.notes[0]


dtypes = st.sampled_from([np.uint8, np.uint16, np.int8, np.int64, np.float16, np.float32, np.float64, np.bool_])


@FEW
@given(
    array=arrays(dtype=dtypes, shape=st.lists(st.integers(0, 8), min_size=1, max_size=5).map(tuple)),
    size=sizes,
)
def test_any_array_is_loaded_as_rgb_squares_or_refused_by_name(array, size):
    try:
        images = to_uint8_images(array, "x.npy", size)
    except InputError as error:
        assert str(error).startswith("x.npy: expected") and "\n" not in str(error)
    else:
        assert images.shape == (len(array), size, size, 3) and images.dtype == np.uint8


@FEW
@given(
    n=st.integers(1, 3),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    channels_first=st.booleans(),
    scale=st.sampled_from(["uint8", "unit float", "byte float"]),
    seed=st.integers(0, 2**16),
)
def test_valid_arrays_keep_their_pixels(n, height, width, channels_first, scale, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    pixels[0, 0, 0, 0] = 255  # so the float scale is told by the largest value, as documented
    array = {"uint8": pixels, "unit float": pixels / 255.0, "byte float": pixels.astype(np.float32)}[scale]
    if channels_first:
        array = array.transpose(0, 3, 1, 2)
    images = to_uint8_images(array, "x.npy", 32)
    assert images.shape == (n, 32, 32, 3)
    if (height, width) == (32, 32):
        np.testing.assert_array_equal(images, pixels)


@FEW
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
    bad_values=st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
)
def test_nan_and_inf_are_always_refused(shape, bad_values, seed, dtype):
    rng = np.random.default_rng(seed)
    array = rng.random((*shape, 3)).astype(dtype)
    flat = array.reshape(-1)
    flat[rng.choice(flat.size, size=min(len(bad_values), flat.size), replace=False)] = bad_values[: flat.size]
    try:
        to_uint8_images(array, "x.npy", 8)
    except InputError as error:
        assert str(error).startswith("x.npy: expected finite pixel values, found")
    else:
        raise AssertionError("an array with NaN or inf was accepted")


@FEW
@given(shape=st.lists(st.integers(1, 6), min_size=4, max_size=4), seed=st.integers(0, 99))
def test_wrong_channel_counts_are_refused(shape, seed):
    if shape[-1] == 3 or shape[1] == 3:
        shape[-1] = shape[1] = 4
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    try:
        to_uint8_images(array, "x.npy", 8)
    except InputError as error:
        assert "expected 3 colour channels (N×H×W×3 or N×3×H×W), found shape" in str(error)
    else:
        raise AssertionError(f"shape {shape} was accepted")


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.sampled_from(["a", "b.png", "..", ".", "", "/", "\\", "c:", "~"]), min_size=1, max_size=6))
def test_archive_member_paths_never_leave_the_archive(parts):
    name = "/".join(parts)
    path = member_path(name)
    if path is not None:
        assert not path.is_absolute() and ".." not in path.parts and "" not in path.parts
        assert str(path) and not str(path).startswith("/")
