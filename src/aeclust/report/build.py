"""``build_report`` (finished runs → a report directory) and ``compare`` (train models side by side, then report)."""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from aeclust.config import RunConfig
from aeclust.data import ImageSet, load_images
from aeclust.errors import ConfigError, RunDirError
from aeclust.pipeline.run import run
from aeclust.pipeline.rundir import RunDir
from aeclust.presets import preset
from aeclust.report import COMPARED_MODELS, DEFAULT_INDICES, INDEX_FILE, TABLE_FILE
from aeclust.report.browser import write_browser
from aeclust.report.clusters import k_selection_figure, merge_tree_figure
from aeclust.report.figures import confusion_figure, embedding_figure, history_figure
from aeclust.report.grids import check_indices, reconstruction_figure, typical_figure
from aeclust.report.html import RunSection, render_page
from aeclust.report.prediction import is_prediction_dir, load_prediction, prediction_images, write_prediction_report
from aeclust.report.runs import FinishedRun, class_names, images_for, load_runs, runs_held
from aeclust.report.style import save_figure
from aeclust.report.table import table_rows, text_table
from aeclust.runtime.io import write_text_atomic
from aeclust.runtime.progress import log

RECONSTRUCTIONS_FILE = "reconstructions.png"


def prepare_report_dir(out: str | Path | None, force: bool, kind: str = "report") -> Path:
    """A new, empty report directory: ``out``, or ``out-2``… beside it; with ``force``, ``out`` replaced.

    ``force`` replaces only an earlier report (a directory holding index.html) or an empty directory, so a
    mistyped ``--out`` cannot delete a run or anything else.
    """
    if force and out is not None and Path(out).exists():
        directory = Path(out)
        if not directory.is_dir() or (any(directory.iterdir()) and not (directory / INDEX_FILE).is_file()):
            raise RunDirError(
                f"{directory}: --force replaces only an aeclust report directory (one holding {INDEX_FILE})"
            )
        shutil.rmtree(directory)
        directory.mkdir(parents=True)
    else:  # named as run directories are, so a report never lands in an earlier one either
        directory = RunDir.create_new(out, kind).path
    return directory


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "run"


def _details(run: FinishedRun) -> str:
    cluster = run.config.cluster
    scores = run.metrics.get("val_scores", {})
    parts = [
        str(run.run_dir),
        f"{len(run.history)} epochs",
        f"seed {run.config.seed}",
        (
            f"{cluster.latent} latents → {cluster.reducer} ({cluster.components}) → {cluster.embedder} → "
            f"{run.clusterer} (k = {run.k})"
        ),
    ]
    if "nmi" in scores:
        parts.append(f"val NMI {scores['nmi']:.3f}, ARI {scores['ari']:.3f}")
    return " · ".join(parts)


def _save(figure: Figure | None, directory: Path, stem: str, kind: str) -> str | None:
    """Save one run's figure as ``STEM-KIND.png``; return its file name (None for a figure there is no data for)."""
    return None if figure is None else save_figure(figure, directory / f"{stem}-{kind}.png").name


def write_report(runs: Sequence[FinishedRun], images: ImageSet, directory: Path, indices: Sequence[int]) -> Path:
    """Draw every figure into ``directory`` and write ``index.html`` there; return the page's path."""
    sections = []
    for number, finished in enumerate(runs, start=1):
        log(f"report: drawing the figures of {finished.label} ({finished.run_dir})")
        names = class_names(finished, images)
        stem, anchor = f"{number}-{_slug(finished.label)}", f"run-{number}"
        browser = write_browser(
            finished, images, names, directory / f"{stem}-browser", report_link=f"../{INDEX_FILE}#{anchor}"
        )
        sections.append(
            RunSection(
                anchor=anchor,
                label=finished.label,
                details=_details(finished),
                embedding=_save(embedding_figure(finished, images, names), directory, stem, "embedding"),
                history=_save(history_figure(finished, images), directory, stem, "training"),
                typical=_save(typical_figure(finished, images, names), directory, stem, "clusters"),
                confusion=_save(confusion_figure(finished, images, names), directory, stem, "confusion"),
                browser=browser.relative_to(directory).as_posix(),
                clusters=len(np.unique(finished.train_clusters)),
                merge_tree=_save(
                    merge_tree_figure(finished, images.train_labels, names), directory, stem, "merge-tree"
                ),
                k_choice=_save(k_selection_figure(finished), directory, stem, "k-choice"),
                k_reason=finished.k_selection.reason if finished.k_selection is not None else None,
            )
        )
    log("report: drawing the reconstructions")
    save_figure(
        reconstruction_figure(runs, images, indices, class_names(runs[0], images)), directory / RECONSTRUCTIONS_FILE
    )
    rows = table_rows(runs)
    write_text_atomic(directory / TABLE_FILE, text_table(rows) + "\n")
    page = render_page(
        title="aeclust report: " + " vs ".join(section.label for section in sections),
        data_source=images.source or images.name,
        generated=f"{datetime.now():%Y-%m-%d %H:%M}",
        rows=rows,
        sections=sections,
        reconstructions=RECONSTRUCTIONS_FILE,
        indices=indices,
    )
    write_text_atomic(directory / INDEX_FILE, page)
    log(f"report: {directory / INDEX_FILE}")
    return directory / INDEX_FILE


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    indices: Sequence[int] = DEFAULT_INDICES,
    *,
    images: ImageSet | None = None,
    force: bool = False,
) -> Path:
    """Build a report of finished runs in a new directory; return the path of its ``index.html``.

    ``images`` are the images the runs were made from; by default they are loaded from the runs' ``config.data``.
    Everything is read and checked before the directory is made, so bad input leaves nothing behind. A directory
    written by ``aeclust predict`` is reported on its own: its clusters' sizes, scores and browser.
    """
    predictions = [str(path) for path in run_dirs if is_prediction_dir(path)]
    if predictions:
        if len(run_dirs) > 1:
            raise ConfigError(
                f"report: {predictions[0]} was written by aeclust predict and is reported on its own; "
                f"expected it alone, found {len(run_dirs)} directories"
            )
        prediction = load_prediction(run_dirs[0])
        images = prediction_images(prediction, images)
        return write_prediction_report(prediction, images, prepare_report_dir(out_dir, force))
    with runs_held(run_dirs):
        runs = load_runs(run_dirs)
        images = images_for(runs, images)
        indices = check_indices(indices, images)
        return write_report(runs, images, prepare_report_dir(out_dir, force), indices)


def _compared_config(
    model: str | RunConfig,
    data: str | None,
    seed: int,
    epochs: int | None,
    threads: int | None,
    image_size: int | None = None,
) -> RunConfig:
    config = preset(model) if isinstance(model, str) else copy.deepcopy(model)
    if data is not None:
        config.data = str(data)
    config.seed = seed
    if image_size is not None:
        config.image_size = image_size
    if epochs is not None:
        config.train.epochs = epochs
    if threads is not None:
        config.threads = threads
    return config


def compare(
    data: str | Path | None = None,
    *,
    models: Sequence[str | RunConfig] = COMPARED_MODELS,
    epochs: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    out: str | Path | None = None,
    indices: Sequence[int] = DEFAULT_INDICES,
    force: bool = False,
    images: ImageSet | None = None,
    image_size: int | None = None,
) -> Path:
    """Train ``models`` (preset names or configurations) on the same data with the same seed, then report them.

    The runs go into ``OUT/runs/MODEL`` and the report into ``OUT``; return the path of ``OUT/index.html``.
    """
    if not models:
        raise ConfigError("expected at least one model to compare, found none")
    configs = [
        _compared_config(model, None if data is None else str(data), seed, epochs, threads, image_size)
        for model in models
    ]
    sources = sorted({(config.data, config.image_size) for config in configs})
    if len(sources) > 1:
        found = ", ".join(f"{source} at {size} px" for source, size in sources)
        raise ConfigError(f"the models name different data ({found}); expected one data set for all")
    images = images if images is not None else load_images(configs[0].data, image_size=configs[0].image_size)
    indices = check_indices(indices, images)  # before hours of training, not after
    directory = prepare_report_dir(out, force, kind="compare")
    run_dirs = [run(config, directory / "runs" / config.model_name, images=images).run_dir for config in configs]
    runs = load_runs(run_dirs)
    return write_report(runs, images_for(runs, images), directory, indices)
