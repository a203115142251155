import hashlib

import numpy as np
import pytest

from aeclust.data import ImageSet, export_hw9, load_hw9, load_images
from aeclust.errors import InputError, RunDirError

# SHA-256 of ../shared/data/animals-vs-vehicles/*.npy, the HW9 export the embedded set must reproduce bit for bit.
EXPECTED_SHA256 = {
    "trainX.npy": "f6d58384d076d84dd4b297f13a70a553f13b38110c6c481b56ceef2bd3f1509e",
    "trainY.npy": "35b6288cf52eb80a0e67daefcbba1909a8ccafedcf545a5ea43abe33f81ca981",
    "valX.npy": "8d88c91599d5152be7cf82b21fb63350c33884a4e529ce5a34d8c4a7dd4cf3c9",
    "valY.npy": "76b7df75bd1ca2c741aa27ad60841cfa05a6d3d9fb0604f2a09124b0a341851f",
}


def test_embedded_set_has_the_hw9_shapes(embedded):
    assert embedded.train_images.shape == (8500, 32, 32, 3)
    assert embedded.val_images.shape == (500, 32, 32, 3)
    assert embedded.train_images.dtype == np.uint8
    assert embedded.val_labels.shape == (500,) and set(np.unique(embedded.val_labels)) == {0, 1}
    assert embedded.class_names == ["vehicle", "animal"]


def test_export_is_bit_identical_to_the_reference_hw9_files(embedded, tmp_path):
    export_hw9(embedded, tmp_path)
    for name, digest in EXPECTED_SHA256.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest, name


def test_export_refuses_to_overwrite(small_set, tmp_path):
    export_hw9(small_set, tmp_path)
    with pytest.raises(RunDirError, match="already holds trainX.npy"):
        export_hw9(small_set, tmp_path)


def test_hw9_round_trip_keeps_the_answer_key_apart(small_hw9_dir, small_set):
    loaded = load_images(small_hw9_dir)
    np.testing.assert_array_equal(loaded.train_images, small_set.train_images)
    np.testing.assert_array_equal(loaded.train_labels, small_set.train_labels)
    np.testing.assert_array_equal(loaded.val_labels, small_set.val_labels)


def test_missing_path_names_the_path(tmp_path):
    with pytest.raises(InputError, match=r"nope: no such file or directory"):
        load_images(tmp_path / "nope")


def test_directory_without_trainx_or_images_is_rejected(tmp_path):
    with pytest.raises(InputError, match="expected image files .* or a HW9-layout trainX.npy, found an empty folder"):
        load_images(tmp_path)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 32, 32), np.uint8), r"expected an N×H×W×3 array, found shape 4×32×32"),
        (np.zeros((4, 32, 32, 1), np.uint8), r"found shape 4×32×32×1"),
        (np.zeros((4, 32, 32, 3), np.float32), "expected dtype uint8, found float32"),
        (np.zeros((0, 32, 32, 3), np.uint8), "expected at least one image, found 0"),
        (np.zeros((4, 30, 30, 3), np.uint8), "found 30×30"),
    ],
)
def test_bad_train_arrays_are_named(tmp_path, array, message):
    np.save(tmp_path / "trainX.npy", array)
    with pytest.raises(InputError, match=message):
        load_hw9(tmp_path)


def test_label_count_must_match(tmp_path, small_set):
    np.save(tmp_path / "trainX.npy", small_set.train_images)
    np.save(tmp_path / "valX.npy", small_set.val_images)
    np.save(tmp_path / "valY.npy", small_set.val_labels[:-1])
    with pytest.raises(InputError, match="expected 120 labels \\(one per image\\), found 119"):
        load_hw9(tmp_path)


def test_labels_of_one_class_are_rejected(small_set):
    with pytest.raises(InputError, match="labels of at least 2 classes, found only class 1"):
        ImageSet("x", small_set.train_images, train_labels=np.ones(240, dtype=np.int64))


def test_unreadable_npy_names_the_file(tmp_path):
    (tmp_path / "trainX.npy").write_bytes(b"not an array")
    with pytest.raises(InputError, match="trainX.npy: expected a .npy array"):
        load_hw9(tmp_path)
