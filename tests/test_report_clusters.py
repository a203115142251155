"""The report with many clusters: palettes, figures that stay readable at k = 50, the cluster browser, the merge
tree and the plot of how k was chosen."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from matplotlib.colors import to_rgb
from PIL import Image

from aeclust.data import ImageSet
from aeclust.errors import RunDirError
from aeclust.pipeline.run import run
from aeclust.report import build_report
from aeclust.report.browser import sprite_sheet, write_browser
from aeclust.report.clusters import k_selection_figure, merge_tree_figure, summarise_clusters
from aeclust.report.figures import confusion_figure, embedding_figure
from aeclust.report.grids import typicality_order
from aeclust.report.runs import load_run
from aeclust.report.style import OKABE_ITO, palette

CHROMIUM = shutil.which("chromium")
CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MANY = 50
K_SELECTION = {
    "criterion": "silhouette",
    "k_range": [2, 6],
    "scores": {"2": 0.21, "3": 0.34, "4": 0.29, "5": None, "6": 0.18},
    "chosen": 3,
    "reason": "k = 3 has the highest silhouette on a 2,000-image subsample.",
}


@pytest.fixture(scope="module")
def tiny_run(small_set, small_hw9_dir, tmp_path_factory) -> Path:
    """One tiny finished run (two clusters) on the small set."""
    config = tiny_config(epochs=1)
    config.data = str(small_hw9_dir)
    return run(config, tmp_path_factory.mktemp("runs") / "tiny", images=small_set).run_dir


@pytest.fixture(scope="module")
def ten_classes(small_set) -> ImageSet:
    """The small set's images under a made-up answer key of ten classes, so clusters can be named after them."""
    rng = np.random.default_rng(0)
    return ImageSet(
        name="ten",
        train_images=small_set.train_images,
        train_labels=rng.integers(0, 10, len(small_set.train_images)),
        val_images=small_set.val_images,
        val_labels=rng.integers(0, 10, len(small_set.val_images)),
        class_names=list(CLASSES),
    )


def recut(run_dir: Path, out: Path, train_clusters: np.ndarray, val_clusters: np.ndarray, **metrics) -> Path:
    """A copy of a finished run whose arrays say it made ``train_clusters`` (as a finished run writes them).

    Each cluster's points sit around a centre of their own in an 8-D clustered space; prediction.csv names the
    images by made-up file paths, to tell them from the images' own indices.
    """
    shutil.copytree(run_dir, out)
    k = int(max(train_clusters.max(), val_clusters.max())) + 1
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(k, 8)) * 5
    for split, clusters in (("train", train_clusters), ("val", val_clusters)):
        np.save(out / "arrays" / f"{split}_clusters.npy", clusters)
        np.save(out / "arrays" / f"{split}_embedding.npy", centres[clusters] + rng.normal(size=(len(clusters), 8)))
    config = json.loads((out / "config.json").read_text())
    config["cluster"]["k"] = k
    (out / "config.json").write_text(json.dumps(config))
    values = json.loads((out / "metrics.json").read_text()) | {"k": k, "class_names": list(CLASSES)} | metrics
    (out / "metrics.json").write_text(json.dumps(values))
    with (out / "prediction.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label"])
        writer.writerows((f"photos/{index:04d}.jpg", int(c)) for index, c in enumerate(train_clusters))
    return out


@pytest.fixture(scope="module")
def many_run(tiny_run, ten_classes, tmp_path_factory) -> Path:
    """The tiny run re-cut into 50 clusters (every cluster holds images), with a k_selection in its metrics."""
    rng = np.random.default_rng(2)
    train = np.concatenate([np.arange(MANY), rng.integers(0, MANY, len(ten_classes.train_images) - MANY)])
    val = rng.integers(0, MANY, len(ten_classes.val_images))
    return recut(tiny_run, tmp_path_factory.mktemp("many") / "k50", train, val, k_selection=K_SELECTION)


@pytest.fixture(scope="module")
def many_report(many_run, ten_classes, tmp_path_factory) -> Path:
    return build_report([many_run], tmp_path_factory.mktemp("report") / "k50", indices=(0, 1), images=ten_classes)


class PageLinks(HTMLParser):
    """What a browser page holds: its tiles' image ids (in order), its links, and its images' sources."""

    def __init__(self, page: Path) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.links: dict[str, str] = {}  # link text → href
        self.images: list[str] = []
        self.rows: list[list[str]] = []
        self._href: str | None = None
        self._cell: list[str] | None = None
        self.feed(page.read_text())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "span" and attrs.get("class") == "t":
            self.ids.append(attrs["data-id"])
        elif tag == "a":
            self._href = attrs["href"]
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._href is not None:
            self.links.setdefault(data.strip(), self._href)
            self._href = None
        if self._cell is not None:
            self._cell.append(data)


# -- colours ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [2, 8, 10, 20, 50])
def test_the_palette_has_a_distinct_colour_for_every_group(groups):
    colours = palette(groups)
    assert len(set(colours)) == len(colours) >= groups
    assert all(min(to_rgb(c)) < 0.9 for c in colours)  # none is near-white on the white page
    if groups <= len(OKABE_ITO):
        assert colours == OKABE_ITO  # the colour-blind-safe colours whenever they suffice


@pytest.mark.parametrize("groups", [20, 50])
def test_clusters_with_consecutive_numbers_never_share_a_hue(groups):
    from matplotlib.colors import rgb_to_hsv

    hues = [rgb_to_hsv(to_rgb(c))[0] for c in palette(groups)[:groups]]
    steps = [min(abs(a - b), 1 - abs(a - b)) for a, b in zip(hues, hues[1:])]
    assert min(steps) > 0.02, steps  # a light and a dark shade of one hue would differ in lightness alone


# -- figures at k = 50 --------------------------------------------------------------------------------------


def test_a_50_cluster_report_has_every_figure(many_report):
    directory = many_report.parent
    page = many_report.read_text()
    for kind in ("embedding", "training", "clusters", "confusion", "merge-tree", "k-choice"):
        name = f"1-tiny-{kind}.png"
        assert f'src="{name}"' in page
        with Image.open(directory / name) as image:
            # readable when the page scales it to its 1250 px: not wider than about 12 inches at 110 dpi
            assert 300 <= image.size[0] <= 1500, (name, image.size)
    assert K_SELECTION["reason"] in page


def matrix_panels(figure) -> list:
    return [axes for axes in figure.axes if axes.get_label() != "<colorbar>"]


def test_the_50_cluster_confusion_matrix_numbers_no_cells(many_run, tiny_run, ten_classes):
    figure = confusion_figure(load_run(many_run), ten_classes, list(CLASSES))
    panels = matrix_panels(figure)
    assert len(panels) == 2 and all(len(axes.texts) == 0 for axes in panels)
    assert [len(axes.get_xticklabels()) for axes in panels] == [MANY, MANY]
    assert figure.get_figwidth() <= 13  # the panels are stacked, not side by side
    few = matrix_panels(confusion_figure(load_run(tiny_run), ten_classes, list(CLASSES)))
    assert [len(axes.texts) for axes in few] == [10 * 2, 10 * 2]  # two clusters: every cell numbered


def test_50_clusters_are_named_at_their_centres_not_in_a_legend(many_run, ten_classes):
    finished = load_run(many_run)
    figure = embedding_figure(finished, ten_classes, list(CLASSES))  # the val split: 120 images, not all clusters
    classes, clusters = figure.axes
    assert classes.get_legend() is not None and len(classes.get_legend().texts) == 10
    assert clusters.get_legend() is None
    assert sorted(int(text.get_text()) for text in clusters.texts) == np.unique(finished.val_clusters).tolist()


def test_the_merge_tree_has_one_leaf_per_cluster_with_its_size(many_run, ten_classes):
    finished = load_run(many_run)
    figure = merge_tree_figure(finished, ten_classes.train_labels, list(CLASSES))
    leaves = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert len(leaves) == MANY
    sizes = np.bincount(finished.train_clusters)
    for leaf in leaves:
        cluster, size = re.match(r"(\d+): (\d+) images?, \w+ \d+%$", leaf).groups()
        assert sizes[int(cluster)] == int(size)


def test_merge_tree_joins_the_nearest_centres_first(tiny_run, ten_classes, tmp_path):
    """Four clusters in two far-apart pairs: the tree joins each pair before joining the pairs."""
    finished = load_run(tiny_run)
    clusters = np.arange(len(finished.train_clusters)) % 4
    finished.train_clusters = clusters
    finished.train_embedding = np.array([[0.0, 0], [0, 1], [50, 0], [50, 1]])[clusters]
    figure = merge_tree_figure(finished, None, None)
    order = [label.get_text().split(":")[0] for label in figure.axes[0].get_yticklabels()]
    assert {frozenset(order[:2]), frozenset(order[2:])} == {frozenset("01"), frozenset("23")}
    finished.train_clusters = np.zeros_like(clusters)
    assert merge_tree_figure(finished, None, None) is None  # one cluster: nothing merges


# -- how k was chosen ---------------------------------------------------------------------------------------


def test_the_k_choice_plot_marks_the_chosen_k(many_run):
    figure = k_selection_figure(load_run(many_run))
    axes = figure.axes[0]
    curve, chosen = axes.lines[0], axes.lines[-1]
    assert curve.get_xdata().tolist() == [2, 3, 4, 5, 6]
    assert np.isnan(curve.get_ydata()[3])  # a k the criterion could not score stays a gap
    assert (chosen.get_xdata().tolist(), chosen.get_ydata().tolist()) == ([3], [0.34])
    assert axes.get_ylabel() == "silhouette"


def test_no_k_choice_plot_without_k_selection(tiny_run, small_set, tmp_path):
    index = build_report([tiny_run], tmp_path / "out", indices=(0,), images=small_set)
    assert not list(index.parent.glob("*k-choice*")) and "k-choice" not in index.read_text()
    assert list(index.parent.glob("*merge-tree.png"))


@pytest.mark.parametrize(
    "k_selection, found",
    [
        ({"criterion": "silhouette", "scores": {"2": 0.1}, "chosen": 2}, "KeyError: 'reason'"),
        ({"criterion": "s", "scores": {"two": 0.1}, "chosen": 2, "reason": "r"}, "ValueError"),
        ({"criterion": "s", "scores": {"2": 0.1, "3": 0.2}, "chosen": 7, "reason": "r"}, "chosen k = 7, not among"),
    ],
)
def test_a_bad_k_selection_is_one_line(tiny_run, tmp_path, k_selection, found):
    copy = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    metrics = json.loads((copy / "metrics.json").read_text()) | {"k_selection": k_selection}
    (copy / "metrics.json").write_text(json.dumps(metrics))
    where = re.escape(str(copy / "metrics.json"))
    with pytest.raises(RunDirError, match=f'^{where}: expected "k_selection"') as error:
        load_run(copy)
    assert found in str(error.value) and "\n" not in str(error.value)


# -- the cluster browser ------------------------------------------------------------------------------------


def test_the_browser_lists_every_cluster_and_shows_each_image_once(many_report, many_run):
    directory = many_report.parent / "1-tiny-browser"
    assert 'href="1-tiny-browser/index.html"' in many_report.read_text()
    overview = PageLinks(directory / "index.html")
    clusters = np.load(many_run / "arrays" / "train_clusters.npy")
    sizes = np.bincount(clusters)
    rows = [row for row in overview.rows if row]  # the header row has no <td>
    assert [(int(row[0]), int(row[1])) for row in rows] == list(enumerate(sizes.tolist()))
    with (many_run / "prediction.csv").open() as handle:
        cluster_of = {row["id"]: int(row["label"]) for row in csv.DictReader(handle)}
    seen = []
    for page in sorted(directory.glob("cluster-*.html")):
        cluster = int(page.name.split("-")[1])
        ids = PageLinks(page).ids
        assert ids and all(cluster_of[image_id] == cluster for image_id in ids), page.name
        seen += ids
    assert sorted(seen) == sorted(cluster_of)  # every image exactly once, named by prediction.csv


def test_browser_pages_link_to_each_other(tiny_run, small_set, tmp_path):
    finished = load_run(tiny_run)
    overview = write_browser(finished, small_set, None, tmp_path / "browser", page_size=50)
    for cluster, summary in enumerate(summarise_clusters(finished.train_clusters, None)):
        pages = -(-summary.size // 50)
        first = PageLinks(overview.parent / f"cluster-{cluster}-1.html")
        assert [first.links[str(n)] for n in range(2, pages + 1)] == [
            f"cluster-{cluster}-{n}.html" for n in range(2, pages + 1)
        ]
        assert first.links["all clusters"] == "index.html"
        # Following "next page" from the first page visits every page once, the cluster's images in typicality order.
        page, ids, visited = first, [], 0
        while True:
            ids += page.ids
            visited += 1
            if "next page ›" not in page.links:
                break
            page = PageLinks(overview.parent / page.links["next page ›"])
        assert visited == pages and all(len(PageLinks(p).ids) <= 50 for p in overview.parent.glob("cluster-*.html"))
        assert ids == [str(i) for i in typicality_order(finished.train_embedding, finished.train_clusters, cluster)]
    assert PageLinks(overview.parent / "cluster-0-1.html").links["cluster 1 »"] == "cluster-1-1.html"
    assert PageLinks(overview.parent / "cluster-1-2.html").links["« cluster 0"] == "cluster-0-1.html"


def test_sprite_sheet_tiles_images_row_by_row():
    pictures = np.arange(5)[:, None, None, None] * np.ones((5, 2, 2, 3), dtype=np.uint8)
    sheet = sprite_sheet(pictures, columns=3)
    assert sheet.shape == (4, 6, 3)
    assert sheet[::2, ::2, 0].tolist() == [[0, 1, 2], [3, 4, 255]]  # the empty sixth place stays white


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`apt-get install chromium`)")
def test_a_browser_page_renders_in_chromium(many_report, tmp_path):
    directory = Path(shutil.copytree(many_report.parent / "1-tiny-browser", tmp_path / "browser"))
    page = directory / "cluster-0-1.html"
    probe = """<script>window.addEventListener("load", async () => {
      const tiles = [...document.querySelectorAll(".t")];
      const sprite = getComputedStyle(tiles[0]).backgroundImage.slice(5, -2);
      const loaded = await new Promise(done => {
        const image = new Image(); image.onload = () => done(image.naturalWidth); image.onerror = () => done(0);
        image.src = sprite;
      });
      const out = document.createElement("pre");
      out.id = "probe";
      out.textContent = JSON.stringify({
        tiles: tiles.length, sprite_width: loaded, tile_width: tiles[0].getBoundingClientRect().width,
        titled: tiles.filter(t => t.title.startsWith(t.dataset.id)).length,
      });
      document.body.appendChild(out);
    });</script>"""
    probed = directory / "probe.html"
    probed.write_text(page.read_text().replace("</body>", probe + "</body>"))
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
               "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'p'}"]
    result = subprocess.run(
        [*command, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.DOTALL)
    assert found, result.stderr[-2000:]
    counts = json.loads(found.group(1))
    tiles = len(PageLinks(page).ids)
    assert counts == {"tiles": tiles, "sprite_width": 20 * 32, "tile_width": 64 + 2 * 3, "titled": tiles}
    shot = tmp_path / "page.png"
    subprocess.run([*command, f"--screenshot={shot}", "--window-size=1200,900", (directory / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    with Image.open(shot) as image:
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 100  # drawn, not blank


def test_the_history_names_how_accuracy_is_scored_and_the_floor(many_run, tiny_run, small_set, ten_classes):
    from aeclust.report.figures import history_figure

    def legend(figure) -> str:
        return " | ".join(text.get_text() for text in figure.axes[0].get_legend().texts)

    ten = legend(history_figure(load_run(many_run), ten_classes))
    shares = np.bincount(ten_classes.val_labels) / len(ten_classes.val_labels)
    assert f"k = {MANY}, Hungarian-matched" in ten and f"largest class's share of val ({shares.max():.2f})" in ten
    two = legend(history_figure(load_run(tiny_run), small_set))
    assert "k = 2, max(acc, 1 − acc)" in two


def test_past_ten_clusters_each_cluster_is_one_named_row_of_typical_images(many_run, ten_classes):
    from aeclust.report.grids import typical_figure

    figure = typical_figure(load_run(many_run), ten_classes, list(CLASSES))
    most, least = figure.axes
    names = [label.get_text() for label in most.get_yticklabels()]
    sizes = np.bincount(load_run(many_run).train_clusters)
    assert len(names) == MANY and not any(label.get_text() for label in least.get_yticklabels())
    assert [int(re.search(r"\n(\d+) images?", name).group(1)) for name in names] == sizes.tolist()
    assert figure.get_figheight() < 0.8 * MANY + 2  # one row a cluster, not three
