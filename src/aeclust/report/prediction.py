"""The report of a predict directory: how many new images went into each of a finished run's clusters, how well
they match an answer key when there is one, and the cluster browser over the new images."""

from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path

from aeclust.data import ImageSet, load_images
from aeclust.errors import InputError, RunDirError
from aeclust.pipeline.rundir import RunDir
from aeclust.report import INDEX_FILE, TABLE_FILE
from aeclust.report.browser import write_browser
from aeclust.report.figures import confusion_figure
from aeclust.report.html import STYLE
from aeclust.report.runs import FinishedRun, class_names
from aeclust.report.style import save_figure
from aeclust.runtime.io import write_text_atomic

BROWSER_DIR = "browser"
CONFUSION_FILE = "confusion.png"
ORDER_NOTES = {
    "refined head": "the ones the cluster head is surest of first",
    "nearest centre": "closest to the cluster's centre first",
}


def is_prediction_dir(path: str | Path) -> bool:
    """Whether ``path`` is what ``aeclust predict`` writes (its metrics.json names the run it predicted from)."""
    directory = RunDir(path)
    if not directory.metrics.is_file():
        return False
    try:
        return "predicted_from" in directory.read_metrics()
    except (RunDirError, InputError):
        return False


def load_prediction(path: str | Path) -> FinishedRun:
    """A predict directory read back, shaped as a run whose "train images" are the predicted ones."""
    directory = RunDir(path)
    metrics = directory.read_metrics()
    if "predicted_from" not in metrics:
        raise RunDirError(f"{directory.path}: expected a directory written by aeclust predict, found another")
    for name in ("train_clusters", "confidence"):
        if not directory.array(name).is_file():
            raise RunDirError(
                f"{directory.path}: expected arrays/{name}.npy, found none (it was predicted by an earlier aeclust; "
                "predict again to report it)"
            )
    clusters, confidence = directory.load_array("train_clusters"), directory.load_array("confidence")
    if len(confidence) != len(clusters):
        raise RunDirError(
            f"{directory.path}: {len(confidence)} confidences for {len(clusters)} images; expected one each"
        )
    source = RunDir(metrics["predicted_from"])
    config = source.read_config()
    return FinishedRun(
        directory.path,
        config,
        metrics,
        [],
        None,
        clusters,
        None,
        None,
        f"{config.model_name} → {directory.path.name}",
        train_ids=directory.read_prediction_ids(len(clusters)),
        confidence=confidence,
        images_word="predicted images",
        order_note=ORDER_NOTES.get(metrics.get("method"), "most typical first"),
    )


def prediction_images(prediction: FinishedRun, images: ImageSet | None = None) -> ImageSet:
    """The images that were predicted (``images`` when given, else loaded from where predict read them)."""
    if images is None:
        data = prediction.metrics.get("data")
        if not data:
            raise RunDirError(
                f"{prediction.run_dir}: metrics.json does not say which images were predicted; pass --data"
            )
        images = load_images(data, image_size=prediction.metrics.get("image_size", prediction.config.image_size))
    if len(images.train_images) != len(prediction.train_clusters):
        raise InputError(
            f"{images.source or images.name}: {len(images.train_images)} images, but {prediction.run_dir} predicted "
            f"{len(prediction.train_clusters)}; expected the same images"
        )
    return images


def write_prediction_report(prediction: FinishedRun, images: ImageSet, directory: Path) -> Path:
    """The page and the browser of one predict directory, in ``directory``; return the page's path."""
    names = class_names(prediction, images)
    browser = write_browser(prediction, images, names, directory / BROWSER_DIR, report_link=f"../{INDEX_FILE}")
    metrics = prediction.metrics
    facts = [
        f"{metrics['images']:,} images from {escape(str(metrics.get('data', images.source or images.name)))}",
        f"into the clusters of {escape(str(metrics['predicted_from']))}",
        f"by its {escape(str(metrics.get('method', '')))}",
        f"generated {datetime.now():%Y-%m-%d %H:%M}",
    ]
    parts = [
        f"<h1>{escape(prediction.label)}</h1>",
        f'<p class="meta">{" · ".join(facts)}</p>',
        f'<p><a class="browser" href="{escape(browser.relative_to(directory).as_posix())}">Browse all '
        f"{len(metrics['cluster_sizes'])} clusters</a>: every predicted image, page by page, {prediction.order_note}."
        "</p>",
    ]
    scores = metrics.get("train_scores")
    if scores:
        parts.append(
            f"<p>Against the answer key: accuracy {scores['accuracy']:.3f}, NMI {scores['nmi']:.3f}, "
            f"ARI {scores['ari']:.3f}.</p>"
        )
        save_figure(confusion_figure(prediction, images, names), directory / CONFUSION_FILE)
        parts.append(
            f'<figure><img src="{CONFUSION_FILE}" alt="confusion matrix"><figcaption>Predicted clusters against '
            "the answer key.</figcaption></figure>"
        )
    total = max(1, sum(metrics["cluster_sizes"]))
    table = ["| cluster | images | share |", "|---|---|---|"] + [
        f"| {cluster} | {size:,} | {size / total:.1%} |" for cluster, size in enumerate(metrics["cluster_sizes"])
    ]
    if scores:
        table.append(f"\naccuracy {scores['accuracy']:.3f}, NMI {scores['nmi']:.3f}, ARI {scores['ari']:.3f}")
    write_text_atomic(directory / TABLE_FILE, "\n".join(table) + "\n")
    rows = "".join(
        f"<tr><td>{cluster}</td><td>{size:,}</td><td>{size / total:.1%}</td></tr>"
        for cluster, size in enumerate(metrics["cluster_sizes"])
    )
    parts.append(
        '<table id="sizes"><thead><tr><th>cluster</th><th>images</th><th>share</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(prediction.label)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    write_text_atomic(directory / INDEX_FILE, page)
    return directory / INDEX_FILE
