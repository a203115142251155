"""Bad input through the command line: one line naming the file, what was expected and what was found; exit 2.

Every case runs through ``aeclust.cli.main`` in this process (quick); a few also run as a real
``python -m aeclust`` process, to check the exit code and that no traceback reaches the terminal.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config

from aeclust.cli import main
from aeclust.pipeline.run import run

SOURCES = (
    "a folder of images, a .zip/.tar/.tar.gz archive of one, a .npy/.npz array, a HW9-layout directory "
    "or 'animals-vs-vehicles'"
)
FAST = ["--reducer", "pca", "--components", "10", "--embedder", "none", "--threads", "1"]


@pytest.fixture(scope="module")
def bad(tmp_path_factory, small_set, small_hw9_dir) -> Path:
    """A directory of bad inputs, one of each kind, and run directories with bad checkpoints."""
    d = tmp_path_factory.mktemp("bad")
    (d / "empty").mkdir()
    (d / "broken").mkdir()
    (d / "broken" / "a.jpg").write_bytes(b"\xff\xd8\xff not a whole jpeg")
    np.save(d / "rank3.npy", np.zeros((4, 32, 32), np.uint8))
    np.save(d / "gray.npy", np.zeros((4, 32, 32, 1), np.uint8))
    np.save(d / "rgba_nchw.npy", np.zeros((4, 4, 32, 32), np.float32))
    np.save(d / "none.npy", np.zeros((0, 32, 32, 3), np.uint8))
    with_nan = np.full((5, 32, 32, 3), 0.5, np.float32)
    with_nan[2, 3, 4, 1] = np.nan
    np.save(d / "nan.npy", with_nan)
    with_inf = np.full((5, 32, 32, 3), 0.5)
    with_inf[3, 0, 0, 0] = np.inf
    np.save(d / "inf.npy", with_inf)
    np.savez(d / "short.npz", images=small_set.train_images[:50], labels=small_set.train_labels[:49])
    for name, file, labels in (("hw9_short", "valY.npy", small_set.val_labels[:119]), ("hw9_one", "trainY.npy", np.ones(240))):
        shutil.copytree(small_hw9_dir, d / name)
        np.save(d / name / file, labels.astype(np.uint8))

    # Run directories to resume, holding a checkpoint of another model, of another format, or an old config.
    def tiny_run(arch: str, out: Path) -> Path:
        config = tiny_config(epochs=1, arch=arch, rotation=arch == "resnet")
        config.data, config.cluster.embedder = str(small_hw9_dir), "none"
        return run(config, out, images=small_set).run_dir

    baseline, resnet = tiny_run("baseline", d / "baseline"), tiny_run("resnet", d / "resnet")
    for name in ("other_model", "other_format", "other_config"):
        shutil.copytree(baseline, d / name)
    shutil.copy(resnet / "checkpoints" / "last.pt", d / "other_model" / "checkpoints" / "last.pt")
    state = torch.load(baseline / "checkpoints" / "last.pt", weights_only=False)
    torch.save(state | {"format_version": 999}, d / "other_format" / "checkpoints" / "last.pt")
    config = (d / "other_config" / "config.json").read_text().replace('"format_version": 1', '"format_version": 2')
    (d / "other_config" / "config.json").write_text(config)
    return d


# (case, command-line arguments with {bad} and {hw9} to fill in, the exact message after "aeclust: error: ")
CASES = [
    ("missing path", ["--data", "{bad}/nope"], f"{{bad}}/nope: no such file or directory; expected {SOURCES}"),
    (
        "empty folder",
        ["--data", "{bad}/empty"],
        "{bad}/empty: expected image files (.bmp, .gif, .jpeg, .jpg, .png, .webp) or a HW9-layout trainX.npy, "
        "found an empty folder",
    ),
    (
        "no readable images",
        ["--data", "{bad}/broken"],
        "{bad}/broken: expected readable images, found 1 image file and none could be read "
        "(such as {bad}/broken/a.jpg: not a JPEG, PNG, WebP, BMP or GIF image)",
    ),
    (
        "wrong rank",
        ["--data", "{bad}/rank3.npy"],
        "{bad}/rank3.npy: expected a 4-D array of images (N×H×W×3 or N×3×H×W), found a 3-D array of shape 4×32×32",
    ),
    (
        "wrong channels",
        ["--data", "{bad}/gray.npy"],
        "{bad}/gray.npy: expected 3 colour channels (N×H×W×3 or N×3×H×W), found shape 4×32×32×1",
    ),
    (
        "wrong channels, channels first",
        ["--data", "{bad}/rgba_nchw.npy"],
        "{bad}/rgba_nchw.npy: expected 3 colour channels (N×H×W×3 or N×3×H×W), found shape 4×4×32×32",
    ),
    ("wrong shape", ["--data", "{bad}/none.npy"], "{bad}/none.npy: expected at least one image, found shape 0×32×32×3"),
    (
        "NaN",
        ["--data", "{bad}/nan.npy"],
        "{bad}/nan.npy: expected finite pixel values, found 1 NaN and 0 inf (the first in image 2)",
    ),
    (
        "inf",
        ["--data", "{bad}/inf.npy"],
        "{bad}/inf.npy: expected finite pixel values, found 0 NaN and 1 inf (the first in image 3)",
    ),
    (
        "label count, HW9",
        ["--data", "{bad}/hw9_short"],
        "{bad}/hw9_short (val labels): expected 120 labels (one per image), found 119",
    ),
    (
        "label count, npz",
        ["--data", "{bad}/short.npz"],
        "{bad}/short.npz [labels]: expected 50 labels (one per image), found 49",
    ),
    (
        "labels of one class",
        ["--data", "{bad}/hw9_one"],
        "{bad}/hw9_one (train labels): expected labels of at least 2 classes, found only class 1",
    ),
    ("k > N", ["--data", "{hw9}", "--k", "1000"], "{hw9}: k=1000 must be between 2 and the number of train images (240)"),
    ("k = 0", ["--data", "{hw9}", "--k", "0"], "k: expected a whole number of clusters of at least 2, or auto; found '0'"),
    (
        "k auto, range above the images",
        ["--data", "{hw9}", "--k", "auto", "--k-range", "2:200"],
        "{hw9}: k range 2:200 does not fit 240 train images; expected HI at most 120, so that every candidate "
        "cluster can hold two",
    ),
    ("k auto, range reversed", ["--data", "{hw9}", "--k", "auto", "--k-range", "5:3"], "{hw9}: k range 5:3: expected LO:HI with 2 <= LO <= HI"),
    ("k auto, range from 1", ["--data", "{hw9}", "--k", "auto", "--k-range", "1:5"], "{hw9}: k range 1:5: expected LO:HI with 2 <= LO <= HI"),
    ("k range not numbers", ["--k", "auto", "--k-range", "2-30"], "k range: expected LO:HI of whole numbers, e.g. 2:30, found '2-30'"),
    ("k range with a fixed k", ["--k", "3", "--k-range", "2:5"], "--k-range 2:5: expected --k auto beside it, found k=3"),
    ("unknown model", ["--model", "vgg"], "unknown model 'vgg'; expected one of: baseline, baseline+rotation, *"),
    ("unknown reducer", ["--data", "{hw9}", "--reducer", "ica"], "unknown reducer 'ica'; expected one of: kpca, none, pca"),
    ("unknown scaling", ["--data", "{hw9}", "--scaling", "max"], "unknown scaling 'max'; expected one of: l2, none, standardize"),
    (
        "unknown embedder",
        ["--data", "{hw9}", "--embedder", "mds"],
        "unknown embedder 'mds'; expected one of: none, sklearn-tsne, tsne, umap",
    ),
    (
        "unknown clusterer",
        ["--data", "{hw9}", "--clusterer", "dbscan"],
        "unknown clusterer 'dbscan'; expected one of: agglomerative, auto, gmm, kmeans, kmeans-merge, whitened-kmeans",
    ),
    (
        "unknown latent mode",
        ["--data", "{hw9}", "--latent", "mean"],
        "unknown latent mode 'mean'; expected one of: flatten, pool, pool+flatten",
    ),
    (
        "image size",
        ["--data", "{hw9}", "--image-size", "30"],
        "image size 30: expected a multiple of 8 of at least 8, such as 32 or 64",
    ),
    (
        "checkpoint of another model",
        ["--resume", "{bad}/other_model", "--epochs", "2"],
        "{bad}/other_model/checkpoints/last.pt: checkpoint is of model resnet with other settings; "
        "expected baseline as configured for this run",
    ),
    (
        "checkpoint of another format version",
        ["--resume", "{bad}/other_format", "--epochs", "2"],
        "{bad}/other_format/checkpoints/last.pt: checkpoint format version 999; this aeclust reads version 1",
    ),
    (
        "run configuration of another format version",
        ["--resume", "{bad}/other_config", "--epochs", "2"],
        "{bad}/other_config/config.json: configuration format version 2; expected 1",
    ),
    (
        "settings changed on resume",
        ["--resume", "{bad}/other_model", "--lr", "0.1", "--model", "baseline"],
        "{bad}/other_model: --resume continues a run with the settings it was started with; found --model, --lr "
        "too (only --epochs, --threads, --device and --workers may change). Start a new run to change them",
    ),
]


def fill(text: str, bad: Path, hw9: Path) -> str:
    return text.replace("{bad}", str(bad)).replace("{hw9}", str(hw9))


def command(case: str, bad: Path, hw9: Path, out: Path) -> list[str]:
    args = next(args for name, args, _ in CASES if name == case)
    args = [fill(arg, bad, hw9) for arg in args]
    if "--resume" in args:  # a resumed run keeps its own settings, so only the thread count goes along
        return ["run", "--threads", "1", *args]
    return ["run", *FAST, *args, "--out", str(out)]  # the case's options win


def assert_one_line_error(stderr: str, case: str, bad: Path, hw9: Path) -> None:
    """The last line is the error, quoted exactly; the only other lines are progress (resumed runs log first)."""
    expected = fill(next(message for name, _, message in CASES if name == case), bad, hw9)
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert [line for line in lines if line.startswith("aeclust: error:")] == lines[-1:]
    pattern = re.escape(f"aeclust: error: {expected}").replace(r"\*", ".*")
    assert re.fullmatch(pattern, lines[-1]), f"\n{lines[-1]}\n{expected}"


@pytest.mark.parametrize("case", [name for name, _, _ in CASES])
def test_bad_input_gets_one_line_and_exit_code_2(case, bad, small_hw9_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(command(case, bad, small_hw9_dir, out)) == 2
    assert_one_line_error(capsys.readouterr().err, case, bad, small_hw9_dir)
    assert not out.exists()  # a bad input leaves no empty run directory behind


def test_bad_input_from_a_real_process(bad, small_hw9_dir, tmp_path):
    """As a user sees it: ``python -m aeclust``, exit code 2, one line, no traceback (processes run side by side)."""
    cases = ["NaN", "checkpoint of another model"]
    processes = {
        case: subprocess.Popen(
            [sys.executable, "-m", "aeclust", *command(case, bad, small_hw9_dir, tmp_path / f"run{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, case in enumerate(cases)
    }
    for case, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, (case, stderr)
        assert_one_line_error(stderr, case, bad, small_hw9_dir)


def test_force_on_bad_input_keeps_the_old_run(bad, small_hw9_dir, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(bad / "baseline", old)
    before = sorted(p.relative_to(old) for p in old.rglob("*"))
    assert main(["run", "--data", str(bad / "nan.npy"), "--out", str(old), "--force"]) == 2
    assert sorted(p.relative_to(old) for p in old.rglob("*")) == before
