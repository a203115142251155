"""The cluster browser: every train image of a run, cluster by cluster, page by page, each named on hover.

One directory per run: ``index.html`` lists the clusters (size, share, most common true class, a strip of the
most typical images); ``cluster-C-P.html`` is page P of cluster C. A page shows at most ``page_size`` images,
drawn from one sprite sheet (``cluster-C-P.png``, the images at their own size side by side) with CSS, so a
50,000-image run makes a few hundred small files rather than 50,000 or one page no browser can scroll.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image

from aeclust.data import ImageSet
from aeclust.report.clusters import ClusterSummary, summarise_clusters
from aeclust.report.grids import FRAME, GAP, montage
from aeclust.report.runs import FinishedRun
from aeclust.report.style import UNKNOWN_GREY, class_name, colour
from aeclust.runtime.io import atomic_open, write_text_atomic

PAGE_SIZE = 300  # images per page: a few screens of thumbnails, about 1 MB of sprite sheet at 32 px
SHEET_COLUMNS = 20  # images per row of a sprite sheet; the page lays the tiles out to the window's width
PREVIEW_IMAGES = 10  # the most typical images shown beside each cluster on the overview, in 1,300 px with the table
SHOWN_SIZE = 64  # pixels a thumbnail takes on the page, at least: CIFAR's 32 px doubled, sharp (pixelated)
BROWSER_INDEX = "index.html"

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 1.5rem auto;
       max-width: 1400px; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; font-size: 1.5rem; }
.meta, .note { color: #555; font-size: 0.9rem; }
nav { margin: 0.8rem 0; line-height: 2; }
nav a, nav strong { padding: 0.1rem 0.45rem; border: 1px solid #ccc; border-radius: 3px; text-decoration: none; }
nav strong { background: #222; color: #fff; border-color: #222; }
nav .off { color: #aaa; padding: 0.1rem 0.45rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; vertical-align: middle; }
td.left, th.left { text-align: left; }
thead th { background: #f2f2f2; position: sticky; top: 0; }
img.strip { image-rendering: pixelated; display: block; }
.sheet { display: flex; flex-wrap: wrap; gap: 2px; }
.t { display: block; box-sizing: content-box; border: 3px solid #fff; image-rendering: pixelated;
     background-repeat: no-repeat; }
.t:hover { outline: 2px solid #000; }
.key span { display: inline-block; width: 0.9rem; height: 0.9rem; vertical-align: -0.1rem; margin: 0 0.2rem 0 0.8rem; }
"""


def _page_name(cluster: int, page: int) -> str:
    return f"cluster-{cluster}-{page}"


def sprite_sheet(pictures: np.ndarray, columns: int) -> np.ndarray:
    """N×S×S×3 images tiled row by row into one (rows·S)×(columns·S)×3 array, the last row padded with white."""
    count, side = len(pictures), pictures.shape[1]
    rows = max(1, math.ceil(count / columns))
    padded = np.full((rows * columns, side, side, 3), 255, dtype=np.uint8)
    padded[:count] = pictures
    return padded.reshape(rows, columns, side, side, 3).swapaxes(1, 2).reshape(rows * side, columns * side, 3)


def _save_png(pixels: np.ndarray, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        Image.fromarray(pixels).save(handle, format="PNG")


def _html(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _class_key(classes: Sequence[int], names: list[str] | None, palette_size: int) -> str:
    """The frame colours' legend: one swatch per true class."""
    swatches = "".join(
        f'<span style="background:{colour(c, palette_size)}"></span>{escape(class_name(names, c))}' for c in classes
    )
    return f'<p class="key note">Frame: true class (answer key):{swatches}</p>'


def _pager(cluster: int, page: int, pages: int, previous_cluster: int | None, next_cluster: int | None) -> str:
    """Links to the overview, the neighbouring pages, every page of this cluster, and the neighbouring clusters."""

    def link(target: str, text: str) -> str:
        return f'<a href="{escape(target)}.html">{text}</a>'

    parts = [f'<a href="{BROWSER_INDEX}">all clusters</a>']
    inactive = '<span class="off">{}</span>'
    parts.append(link(_page_name(cluster, page - 1), "‹ previous page") if page > 1 else inactive.format("‹"))
    for number in range(1, pages + 1):
        parts.append(f"<strong>{number}</strong>" if number == page else link(_page_name(cluster, number), str(number)))
    parts.append(link(_page_name(cluster, page + 1), "next page ›") if page < pages else inactive.format("›"))
    if previous_cluster is not None:
        parts.append(link(_page_name(previous_cluster, 1), f"« cluster {previous_cluster}"))
    if next_cluster is not None:
        parts.append(link(_page_name(next_cluster, 1), f"cluster {next_cluster} »"))
    return f"<nav>{' '.join(parts)}</nav>"


class ClusterBrowser:
    """Writes one run's browser; ``page_size`` images at most per page."""

    def __init__(
        self,
        run: FinishedRun,
        images: ImageSet,
        names: list[str] | None,
        *,
        page_size: int = PAGE_SIZE,
        report_link: str = "../index.html",
    ) -> None:
        self.run = run
        self.images = images
        self.names = names
        self.page_size = page_size
        self.report_link = report_link
        self.ids = run.train_ids if run.train_ids is not None else images.ids()
        labels = images.train_labels
        self.classes = [int(c) for c in np.unique(labels)] if labels is not None else []
        self.palette_size = max(self.classes, default=0) + 1
        # Thumbnails are enlarged by a whole factor, so each stored pixel stays a sharp square (CSS pixelated).
        self.scale = max(1, round(SHOWN_SIZE / images.image_size))

    def write(self, directory: Path) -> Path:
        """Write the overview and every cluster's pages into ``directory``; return the overview's path."""
        run, labels = self.run, self.images.train_labels
        directory.mkdir(parents=True, exist_ok=True)
        summaries = summarise_clusters(run.train_clusters, labels)
        numbers = [summary.cluster for summary in summaries]
        rows = []
        for position, summary in enumerate(summaries):
            order = run.members_in_order(summary.cluster)
            pages = math.ceil(len(order) / self.page_size)
            neighbours = (
                numbers[position - 1] if position > 0 else None,
                numbers[position + 1] if position + 1 < len(numbers) else None,
            )
            for page in range(1, pages + 1):
                members = order[(page - 1) * self.page_size : page * self.page_size]
                self._write_page(directory, summary, page, pages, members, *neighbours)
            preview = f"preview-{summary.cluster}.png"
            shown = order[:PREVIEW_IMAGES]
            strip = montage(self.images.train_images[shown], self._frames(shown), columns=len(shown))
            _save_png(strip, directory / preview)
            rows.append(self._overview_row(summary, pages, preview, min(len(order), PREVIEW_IMAGES)))
        write_text_atomic(directory / BROWSER_INDEX, self._overview(summaries, rows))
        return directory / BROWSER_INDEX

    def _frames(self, members: np.ndarray) -> list[str]:
        labels = self.images.train_labels
        if labels is None:
            return [UNKNOWN_GREY] * len(members)
        return [colour(int(labels[i]), self.palette_size) for i in members]

    def _write_page(
        self,
        directory: Path,
        summary: ClusterSummary,
        page: int,
        pages: int,
        members: np.ndarray,
        previous_cluster: int | None,
        next_cluster: int | None,
    ) -> None:
        stem = _page_name(summary.cluster, page)
        sheet = sprite_sheet(self.images.train_images[members], SHEET_COLUMNS)
        _save_png(sheet, directory / f"{stem}.png")
        shown = self.images.image_size * self.scale
        sheet_size = f"{sheet.shape[1] * self.scale}px {sheet.shape[0] * self.scale}px"
        labels = self.images.train_labels
        tiles = []
        for position, index in enumerate(members):
            row, column = divmod(position, SHEET_COLUMNS)
            x, y = column * shown, row * shown
            image_id = self.ids[index]
            title, border = image_id, ""
            if labels is not None:
                title += f" · true class: {class_name(self.names, int(labels[index]))}"
                border = f"border-color:{colour(int(labels[index]), self.palette_size)};"
            tiles.append(
                f'<span class="t" data-id="{escape(image_id)}" title="{escape(title)}" '
                f'style="{border}background-position:-{x}px -{y}px"></span>'
            )
        first = (page - 1) * self.page_size + 1
        described = summary.describe(self.names)
        facts = [
            f"{summary.size} {self.run.images_word} ({summary.share:.1%} of {len(self.run.train_clusters)})",
            f"most common true class: {escape(described)}" if described else "",
            f"images {first}–{first + len(members) - 1}, {self.run.order_note}",
            "hover an image for its name",
        ]
        pager = _pager(summary.cluster, page, pages, previous_cluster, next_cluster)
        page_style = (
            f'<style>.t {{ width: {shown}px; height: {shown}px; background-image: url("{stem}.png"); '
            f"background-size: {sheet_size}; }}</style>"
        )
        title = f"{self.run.label}: cluster {summary.cluster}, page {page} of {pages}"
        body = "\n".join(
            [
                page_style,
                f"<h1>{escape(title)}</h1>",
                f'<p class="meta">{" · ".join(fact for fact in facts if fact)}</p>',
                _class_key(self.classes, self.names, self.palette_size) if labels is not None else "",
                pager,
                f'<div class="sheet">{"".join(tiles)}</div>',
                pager,
            ]
        )
        write_text_atomic(directory / f"{stem}.html", _html(title, body))

    def _overview_row(self, summary: ClusterSummary, pages: int, preview: str, previewed: int) -> str:
        scale = self.scale
        tile = self.images.image_size + 2 * FRAME
        width, height = (previewed * (tile + GAP) - GAP) * scale, tile * scale
        page_links = " ".join(
            f'<a href="{_page_name(summary.cluster, page)}.html">{page}</a>' for page in range(1, pages + 1)
        )
        described = summary.describe(self.names)
        cells = [
            f'<td><a href="{_page_name(summary.cluster, 1)}.html">{summary.cluster}</a></td>',
            f"<td>{summary.size}</td>",
            f"<td>{summary.share:.1%}</td>",
            f'<td class="left">{escape(described)}</td>' if self.classes else "",
            f'<td class="left">{page_links}</td>',
            f'<td class="left"><img class="strip" src="{preview}" width="{width}" height="{height}" '
            f'alt="cluster {summary.cluster}: its most typical images"></td>',
        ]
        return f"<tr>{''.join(cells)}</tr>"

    def _overview(self, summaries: Sequence[ClusterSummary], rows: Sequence[str]) -> str:
        run = self.run
        heads = ["cluster", "images", "share"]
        if self.classes:
            heads.append("most common class")
        heads += ["pages", f"most typical images (up to {PREVIEW_IMAGES})"]
        head = "".join(f'<th class="{"left" if i > 2 else ""}">{escape(h)}</th>' for i, h in enumerate(heads))
        title = f"{run.label}: {len(summaries)} clusters of {len(run.train_clusters)} {run.images_word}"
        facts = [
            f'<a href="{escape(self.report_link)}">back to the report</a>',
            escape(str(run.run_dir)),
            f"at most {self.page_size} images a page, {run.order_note}",
        ]
        if self.classes:
            facts.append("most common class: by the answer key, with its share of the cluster")
        body = "\n".join(
            [
                f"<h1>{escape(title)}</h1>",
                f'<p class="meta">{" · ".join(facts)}</p>',
                _class_key(self.classes, self.names, self.palette_size) if self.classes else "",
                f'<table id="clusters"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>',
            ]
        )
        return _html(title, body)


def write_browser(
    run: FinishedRun,
    images: ImageSet,
    names: list[str] | None,
    directory: Path,
    *,
    page_size: int = PAGE_SIZE,
    report_link: str = "../index.html",
) -> Path:
    """Write ``run``'s cluster browser into ``directory``; return the path of its overview page."""
    return ClusterBrowser(run, images, names, page_size=page_size, report_link=report_link).write(directory)
