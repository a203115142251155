"""The HTML report: files, figures, the table, a real browser's view of the page, and the errors for bad input."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from aeclust.cli import main
from aeclust.data import ImageSet
from aeclust.errors import ConfigError, InputError, RunDirError
from aeclust.pipeline.run import run
from aeclust.report import build_report, compare
from aeclust.report.build import write_report
from aeclust.report.figures import cluster_colours
from aeclust.report.grids import montage, typicality_order
from aeclust.report.runs import load_run
from aeclust.report.table import COLUMNS, format_seconds

FIGURES_PER_RUN = ("embedding", "training", "clusters", "confusion", "merge-tree")
SECTIONS = (
    "1. Results",
    "2. The 2-D embedding",
    "3. Reconstructions",
    "4. Training",
    "5. Inside each cluster",
    "6. Confusion matrix",
    "7. Every cluster",
)
CHROMIUM = shutil.which("chromium")


def named_config(name: str, arch: str, data: Path, epochs: int = 2):
    config = tiny_config(epochs=epochs, arch=arch, rotation=arch == "resnet")
    config.model_name, config.data = name, str(data)
    return config


@pytest.fixture(scope="module")
def run_dirs(small_set, small_hw9_dir, tmp_path_factory) -> list[Path]:
    """Two tiny finished runs on the small set; their config.data names its HW9 export, so a report can reload it."""
    root = tmp_path_factory.mktemp("runs")
    return [
        run(named_config(name, arch, small_hw9_dir), root / name, images=small_set).run_dir
        for name, arch in (("tiny-resnet", "resnet"), ("tiny-baseline", "baseline"))
    ]


@pytest.fixture(scope="module")
def report(run_dirs, tmp_path_factory) -> Path:
    """A report of both runs, its images loaded from the runs' own config.data."""
    return build_report(run_dirs, tmp_path_factory.mktemp("reports") / "report")


def test_report_writes_every_file(report, run_dirs):
    directory = report.parent
    assert report.name == "index.html"
    expected = {"index.html", "table.md", "reconstructions.png"}
    expected |= {
        f"{n}-{name}-{figure}.png"
        for n, name in ((1, "tiny-resnet"), (2, "tiny-baseline"))
        for figure in FIGURES_PER_RUN
    }
    browsers = {"1-tiny-resnet-browser", "2-tiny-baseline-browser"}  # each run's cluster browser
    assert {path.name for path in directory.iterdir()} == expected | browsers
    page = report.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(sources) == sorted(expected - {"index.html", "table.md"})
    for browser in browsers:
        assert f'<a class="browser" href="{browser}/index.html">' in page
        assert (directory / browser / "index.html").is_file()
    for source in sources:
        with Image.open(directory / source) as image:
            assert image.format == "PNG" and min(image.size) >= 300
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page
    assert "http" not in page.replace('lang="en"', "")  # self-contained: nothing fetched from anywhere


def test_table_has_one_row_per_model_with_the_run_metrics(report, run_dirs):
    lines = (report.parent / "table.md").read_text().splitlines()
    assert [cell.strip() for cell in lines[0].strip("|").split("|")] == list(COLUMNS)
    assert len(lines) == 2 + len(run_dirs)
    for line, run_dir in zip(lines[2:], run_dirs):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == metrics["model"]
        assert cells[1:4] == [f"{metrics[key]:.4f}" for key in ("val_mse", "val_accuracy", "train_accuracy")]


def probe_in_chromium(directory: Path, work: Path) -> dict:
    """Open a copy of ``directory/index.html`` in headless Chromium; return what a script counted after loading.

    The script writes into the DOM how many <img> there are, which failed to load (naturalWidth 0) and how
    many rows the results table has; ``--dump-dom`` prints the DOM, so the test reads the counts from it.
    """
    probe = """<script>window.addEventListener("load", () => {
      const images = [...document.images];
      const out = document.createElement("pre");
      out.id = "probe";
      out.textContent = JSON.stringify({
        images: images.length,
        broken: images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute("src")),
        rows: document.querySelectorAll("#results tbody tr").length,
      });
      document.body.appendChild(out);
    });</script>"""
    page = directory / "probe.html"
    page.write_text((directory / "index.html").read_text().replace("</body>", probe + "</body>"))
    result = subprocess.run(
        [*chromium_command(work / "probe-profile"), "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.DOTALL)
    assert found, f"the probe never ran; chromium said: {result.stderr[-2000:]}"
    return json.loads(found.group(1))


def chromium_command(profile: Path) -> list[str]:
    quiet = [
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *quiet, f"--user-data-dir={profile}"]


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (`apt-get install chromium`; .ci/run installs it)"
)


@needs_chromium
def test_page_renders_in_chromium_with_every_figure(report, run_dirs, tmp_path):
    directory = Path(shutil.copytree(report.parent, tmp_path / "page"))
    screenshot = tmp_path / "page.png"
    result = subprocess.run(
        [
            *chromium_command(tmp_path / "profile"),
            f"--screenshot={screenshot}",
            "--window-size=1400,3000",
            (directory / "index.html").as_uri(),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert screenshot.is_file(), result.stderr[-2000:]
    with Image.open(screenshot) as shot:
        assert shot.size == (1400, 3000)
        assert len(shot.convert("RGB").getcolors(maxcolors=1 << 24)) > 100  # a page was drawn, not a blank
    counts = probe_in_chromium(directory, tmp_path)
    assert counts == {"images": 1 + len(FIGURES_PER_RUN) * len(run_dirs), "broken": [], "rows": len(run_dirs)}


@needs_chromium
def test_the_browser_check_sees_a_missing_figure(report, tmp_path):
    directory = Path(shutil.copytree(report.parent, tmp_path / "page"))
    (directory / "reconstructions.png").unlink()
    assert probe_in_chromium(directory, tmp_path)["broken"] == ["reconstructions.png"]


def test_a_run_without_labels_still_gets_a_report(run_dirs, small_set, tmp_path):
    """No val set and no answer key: the embedding shows train clusters alone, and there is no confusion matrix."""
    unlabelled = ImageSet(name="unlabelled", train_images=small_set.train_images)
    finished = dataclasses.replace(load_run(run_dirs[0]), val_embedding=None, val_clusters=None)
    (tmp_path / "out").mkdir()
    page = write_report([finished], unlabelled, tmp_path / "out", indices=(0,)).read_text()
    assert "nothing to confuse" in page
    assert sorted(path.name for path in (tmp_path / "out").glob("*.png")) == [
        "1-tiny-resnet-clusters.png",
        "1-tiny-resnet-embedding.png",
        "1-tiny-resnet-merge-tree.png",
        "1-tiny-resnet-training.png",
        "reconstructions.png",
    ]


def test_an_existing_report_is_never_overwritten(run_dirs, small_set, tmp_path):
    first = build_report(run_dirs[:1], tmp_path / "out", indices=(0,), images=small_set)
    before = first.read_bytes()
    second = build_report(run_dirs[:1], tmp_path / "out", indices=(0,), images=small_set)
    assert second == tmp_path / "out-2" / "index.html"
    assert first.read_bytes() == before
    replaced = build_report(run_dirs[:1], tmp_path / "out", indices=(0,), images=small_set, force=True)
    assert replaced == first and not (tmp_path / "out-3").exists()


def test_force_replaces_only_a_report(run_dirs, small_set, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="notes: --force replaces only an aeclust report directory"):
        build_report(run_dirs[:1], tmp_path / "notes", images=small_set, force=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_bad_run_directories_are_refused_with_the_path(run_dirs, tmp_path):
    with pytest.raises(
        RunDirError,
        match=f"^{re.escape(str(tmp_path / 'nowhere'))}: expected a finished aeclust run directory, found nothing there$",
    ):
        build_report([tmp_path / "nowhere"], tmp_path / "out")
    half = Path(shutil.copytree(run_dirs[0], tmp_path / "half"))
    (half / "metrics.json").unlink()
    (half / "arrays" / "train_clusters.npy").unlink()
    with pytest.raises(
        RunDirError,
        match=f"^{re.escape(str(half))}: expected a finished aeclust run directory; missing metrics.json, arrays/train_clusters.npy$",
    ):
        build_report([half], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing is made from bad input


def test_images_that_do_not_match_the_run_are_refused(run_dirs, small_set, tmp_path):
    fewer = ImageSet(name="fewer", train_images=small_set.train_images[:100])
    with pytest.raises(
        InputError, match=f"{re.escape(str(run_dirs[0]))}: the run clustered 240 train images but fewer has 100"
    ):
        build_report(run_dirs[:1], tmp_path / "out", images=fewer)


def test_runs_on_different_data_are_refused(run_dirs, tmp_path):
    other = Path(shutil.copytree(run_dirs[1], tmp_path / "other"))
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "data": "/elsewhere"}))
    with pytest.raises(
        InputError, match="^the runs use different data \\(/elsewhere, .*\\); expected runs on the same data"
    ):
        build_report([run_dirs[0], other], tmp_path / "out")


def test_indices_out_of_range_are_refused(run_dirs, small_set, tmp_path):
    with pytest.raises(
        InputError, match=r"trainX index 240, 999 out of range: small has 240 train images \(indices 0 to 239\)"
    ):
        build_report(run_dirs, tmp_path / "out", indices=(1, 240, 999), images=small_set)
    assert not (tmp_path / "out").exists()


def test_cli_report_prints_the_table_and_the_page(run_dirs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", str(run_dirs[1]), "--out", str(out), "--indices", "0", "5"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("| model") and "| tiny-baseline" in printed
    assert printed.strip().endswith(f"report: {out / 'index.html'}")
    assert "Train images 0, 5:" in (out / "index.html").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["report", "/no/such/run", "--out", "OUT"],
            "aeclust: error: /no/such/run: expected a finished aeclust run directory",
        ),
        (["compare", "--models", "vgg", "--out", "OUT"], "aeclust: error: unknown model 'vgg'; expected one of:"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path, capsys):
    args = [str(tmp_path / "out") if arg == "OUT" else arg for arg in args]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(message) and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["report", "compare"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and f"usage: aeclust {command}" in capsys.readouterr().out


def test_compare_trains_each_model_on_the_same_data_then_reports(small_set, small_hw9_dir, tmp_path):
    models = [
        named_config("tiny-a", "resnet", small_hw9_dir, epochs=1),
        named_config("tiny-b", "baseline", small_hw9_dir, epochs=1),
    ]
    index = compare(str(small_hw9_dir), models=models, seed=3, out=tmp_path / "cmp", indices=(0, 1), images=small_set)
    assert index == tmp_path / "cmp" / "index.html" and index.is_file()
    for name in ("tiny-a", "tiny-b"):
        config = json.loads((tmp_path / "cmp" / "runs" / name / "config.json").read_text())
        assert (config["seed"], config["data"], config["model_name"]) == (3, str(small_hw9_dir), name)
    assert len((tmp_path / "cmp" / "table.md").read_text().splitlines()) == 4
    assert models[0].seed == 0  # the caller's configurations are left as they were


def test_compare_resizes_the_images_for_every_model(small_hw9_dir, tmp_path):
    models = [named_config("tiny-16", "resnet", small_hw9_dir, epochs=1)]
    compare(str(small_hw9_dir), models=models, out=tmp_path / "cmp", indices=(0,), image_size=16)
    run_dir = tmp_path / "cmp" / "runs" / "tiny-16"
    assert json.loads((run_dir / "config.json").read_text())["image_size"] == 16
    assert np.load(run_dir / "arrays" / "train_latents.npy").shape[-1] == 16 // 8  # three halvings of 16 px


def test_compare_refuses_models_on_different_data(small_hw9_dir, tmp_path):
    models = [named_config("a", "resnet", small_hw9_dir), named_config("b", "resnet", tmp_path)]
    with pytest.raises(ConfigError, match="the models name different data"):
        compare(models=models, out=tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()


# -- the parts, on small made-up inputs -----------------------------------------------------------------


def test_typicality_orders_members_by_distance_to_their_centre():
    embedding = np.array([[0, 0], [1, 0], [-3, 0], [10, 10], [11, 10], [0.2, 0]], dtype=float)
    clusters = np.array([0, 0, 0, 1, 1, 0])
    # Cluster 0's centre is (-0.45, 0): point 0 is nearest, then 5, then 1, and point 2 is farthest.
    assert typicality_order(embedding, clusters, 0).tolist() == [0, 5, 1, 2]
    assert sorted(typicality_order(embedding, clusters, 1).tolist()) == [3, 4]


def test_a_cluster_takes_the_colour_of_its_matched_class():
    labels = np.array([0, 0, 0, 1, 1, 1])
    clusters = np.array([1, 1, 1, 0, 0, 2])
    colours, matched = cluster_colours(labels, clusters)
    assert matched == {1: 0, 0: 1}
    assert colours == {1: 0, 0: 1, 2: 2}  # the unmatched cluster gets a colour no class uses


def test_montage_frames_each_image():
    pictures = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    canvas = montage(pictures, ["#0072B2"] * 5, columns=3)
    assert canvas.shape == (2 * 14 + 3, 3 * 14 + 2 * 3, 3)  # 8 px + a 3 px frame on each side, 3 px gaps
    assert tuple(canvas[0, 0]) == (0, 114, 178) and tuple(canvas[3, 3]) == (0, 0, 0)
    assert tuple(canvas[-1, -1]) == (255, 255, 255)  # the sixth slot stays empty


@pytest.mark.parametrize(
    "seconds, text", [(41.6, "42 s"), (185, "3 min 05 s"), (3720, "1 h 02 min"), (float("nan"), "—")]
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_the_table_shows_accuracy_before_refinement_when_a_run_refined(run_dirs):
    from aeclust.report.table import table_rows

    finished = load_run(run_dirs[0])
    plain = table_rows([finished])[0]
    assert "before refinement" not in " ".join(plain)
    finished.metrics |= {"val_accuracy": 0.87, "val_accuracy_before_refine": 0.826, "train_accuracy_before_refine": 0.8}
    refined = table_rows([finished])[0]
    assert refined[2] == "0.8700 (0.8260 before refinement)" and refined[3].endswith("(0.8000 before refinement)")
