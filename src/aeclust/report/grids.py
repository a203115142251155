"""Figures made of images: originals over reconstructions, and each cluster's most and least typical members."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from aeclust.data import ImageSet
from aeclust.encoders.autoencoder import load_model
from aeclust.errors import InputError
from aeclust.metrics import matching
from aeclust.report.runs import FinishedRun, typicality_order
from aeclust.report.style import UNKNOWN_GREY, class_name, colour, new_figure
from aeclust.runtime.infer import reconstruct

GRID_ROWS, GRID_COLUMNS = 3, 8  # images per grid: enough to see a pattern, small enough to read at a glance
# Past ten clusters each grid is one row: 50 clusters of three rows would make a figure 140 inches tall, and the
# cluster browser shows every image anyway.
MANY_CLUSTERS = 10
FRAME, GAP = 3, 3  # pixels: a frame coloured by the true class, and white space between images


def check_indices(indices: Sequence[int], images: ImageSet) -> list[int]:
    """The trainX indices to show, or :class:`InputError` naming the ones out of range."""
    indices = [int(index) for index in indices]
    count = len(images.train_images)
    if not indices:
        raise InputError("expected at least one trainX index to show, found none")
    outside = [index for index in indices if not 0 <= index < count]
    if outside:
        raise InputError(
            f"trainX index {', '.join(map(str, outside))} out of range: {images.source or images.name} has "
            f"{count} train images (indices 0 to {count - 1})"
        )
    return indices


def _mse_in_model_space(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Per-image MSE in [-1, 1] space, the space the models are trained and scored in."""
    difference = (originals.astype(np.float64) - reconstructions.astype(np.float64)) / 127.5
    return (difference**2).mean(axis=(1, 2, 3))


def reconstruction_figure(
    runs: Sequence[FinishedRun], images: ImageSet, indices: Sequence[int], names: list[str] | None
) -> Figure:
    """The chosen train images in the top row and, in one row per run, its model's reconstructions of them."""
    originals = images.train_images[list(indices)]
    rows = [("original", originals, None)]
    for run in runs:
        model, _ = load_model(run.checkpoint)
        reconstructions = reconstruct(model, originals)
        rows.append((run.label, reconstructions, _mse_in_model_space(originals, reconstructions)))
    figure = new_figure(1.3 * len(indices) + 1.8, 1.45 * len(rows) + 1.0)
    grid = figure.subplots(len(rows), len(indices), squeeze=False)
    for row, (row_name, pictures, errors) in enumerate(rows):
        for column, index in enumerate(indices):
            axes = grid[row, column]
            axes.imshow(pictures[column], interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                title = f"[{index}]"
                if images.train_labels is not None:
                    title += f"\n{class_name(names, int(images.train_labels[index]))}"
                axes.set_title(title, fontsize=9)
            if errors is not None:
                axes.set_xlabel(f"MSE {errors[column]:.3f}", fontsize=8)
            if column == 0:
                axes.set_ylabel(row_name, rotation=0, ha="right", va="center", fontsize=10)
    figure.suptitle("Originals (top row) over each model's reconstructions")
    figure.supxlabel(
        "trainX index (and true class, when known); under each reconstruction its MSE in [-1, 1] space", fontsize=9
    )
    return figure


def montage(pictures: np.ndarray, frame_colours: Sequence[str], columns: int) -> np.ndarray:
    """Images tiled into one uint8 array, row by row, each inside a frame of its colour."""
    side = pictures.shape[1]
    tile = side + 2 * FRAME
    rows = max(1, math.ceil(len(pictures) / columns))
    canvas = np.full((rows * (tile + GAP) - GAP, columns * (tile + GAP) - GAP, 3), 255, dtype=np.uint8)
    for position, (picture, frame_colour) in enumerate(zip(pictures, frame_colours)):
        top, left = (position // columns) * (tile + GAP), (position % columns) * (tile + GAP)
        canvas[top : top + tile, left : left + tile] = np.round(np.array(to_rgb(frame_colour)) * 255)
        canvas[top + FRAME : top + FRAME + side, left + FRAME : left + FRAME + side] = picture
    return canvas


def _cluster_name(cluster: int, matched: dict[int, int], names: list[str] | None) -> str:
    return f"cluster {cluster}" + (f" ≈ {class_name(names, matched[cluster])}" if cluster in matched else "")


def typical_figure(run: FinishedRun, images: ImageSet, names: list[str] | None) -> Figure:
    """For each train cluster, its most typical images beside its least typical ones, framed by true class.

    Up to :data:`MANY_CLUSTERS` clusters, a titled grid of three rows per cluster and side; past that one row
    per cluster, all clusters stacked into a single picture per side (a hundred small axes would take seconds
    to lay out), each row named on the left.
    """
    labels = images.train_labels
    clusters = run.train_clusters
    cluster_ids = [int(c) for c in np.unique(clusters)]
    matched = matching(labels, clusters) if labels is not None else {}
    many = len(cluster_ids) > MANY_CLUSTERS
    per_grid = (1 if many else GRID_ROWS) * GRID_COLUMNS
    classes = [int(c) for c in np.unique(labels)] if labels is not None else []
    palette_size = max(classes, default=0) + 1

    def grids(cluster: int) -> tuple[np.ndarray, np.ndarray]:
        """The cluster's most and least typical images, each as a framed montage."""
        order = typicality_order(run.train_embedding, clusters, cluster)
        return tuple(
            montage(
                images.train_images[chosen],
                [colour(int(labels[i]), palette_size) if labels is not None else UNKNOWN_GREY for i in chosen],
                GRID_COLUMNS,
            )
            for chosen in (order[:per_grid], order[::-1][:per_grid])
        )

    sides = (("most typical", "closest to the centre first →"), ("least typical", "farthest from the centre first →"))
    sizes = np.bincount(clusters)

    def size_of(cluster: int, separator: str = " ") -> str:
        count = sizes[cluster]
        return f"{count} image{'' if count == 1 else 's'}{separator}({count / len(clusters):.0%})"

    if many:
        figure = new_figure(2 * GRID_COLUMNS * 0.62 + 2.6, len(cluster_ids) * 0.7 + 1.4)
        pairs = [grids(cluster) for cluster in cluster_ids]
        row_gap = 4 * GAP  # wider than the gaps inside a row, so each cluster's row reads as one
        height = pairs[0][0].shape[0] + row_gap
        for side, ((which, reading), axes) in enumerate(zip(sides, figure.subplots(1, 2))):
            rows = [np.pad(pair[side], ((0, row_gap), (0, 0), (0, 0)), constant_values=255) for pair in pairs]
            axes.imshow(np.concatenate(rows)[:-row_gap], interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([row * height + (height - row_gap) / 2 for row in range(len(cluster_ids))])
            tick_labels = [f"{_cluster_name(cluster, matched, names)}\n{size_of(cluster)}" for cluster in cluster_ids]
            axes.set_yticklabels(tick_labels if side == 0 else [], fontsize=8)
            axes.tick_params(axis="y", length=0)
            axes.set_title(f"{which} ({reading})", fontsize=10)
    else:
        figure = new_figure(2 * GRID_COLUMNS * 0.62 + 1.6, len(cluster_ids) * (GRID_ROWS * 0.62 + 0.9) + 1.2)
        grid = figure.subplots(len(cluster_ids), 2, squeeze=False)
        for row, cluster in enumerate(cluster_ids):
            name = _cluster_name(cluster, matched, names)
            for axes, picture, (which, reading) in zip(grid[row], grids(cluster), sides):
                axes.imshow(picture, interpolation="nearest")
                axes.set_xticks([])
                axes.set_yticks([])
                axes.set_title(f"{name}: {which}", fontsize=10)
                axes.set_xlabel(reading, fontsize=8)
            grid[row, 0].set_ylabel(f"cluster {cluster}\n" + size_of(cluster, separator="\n"), fontsize=9)
    if labels is not None:
        handles = [Patch(color=colour(c, palette_size), label=class_name(names, c)) for c in classes]
        figure.legend(
            handles=handles,
            title="frame: true class (answer key)",
            loc="outside lower center",
            ncol=min(len(handles), 5 if len(handles) <= 10 else 8),
        )
    else:
        figure.legend(
            handles=[Patch(color=UNKNOWN_GREY, label="true class unknown (no answer key)")], loc="outside lower center"
        )
    dimensions = run.train_embedding.shape[1]
    space = "the 2-D embedding" if dimensions == 2 else f"the {dimensions}-D space the clusterer saw"
    figure.suptitle(f"{run.label}: inside each cluster (train images, by distance to the centre in {space})")
    return figure
