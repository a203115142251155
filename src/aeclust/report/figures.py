"""The report's plots: the 2-D embedding, the training curve and the confusion matrix of one run."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA

from aeclust.data import ImageSet
from aeclust.metrics import matching
from aeclust.report.runs import FinishedRun
from aeclust.report.style import OKABE_ITO, SEQUENTIAL_MAP, class_name, colour, marker, new_figure

EMBEDDER_AXES = {"tsne": "t-SNE", "sklearn-tsne": "t-SNE", "umap": "UMAP"}
MSE_COLOUR, ACCURACY_COLOUR = OKABE_ITO[0], OKABE_ITO[5]  # blue and vermillion: apart in hue and in lightness
# A legend past twenty entries is taller than the plot and its colours no longer tell groups apart; past ten
# groups each group's name is also written at its centre, and past twenty only there.
LEGEND_LIMIT, CENTRE_LABELS_FROM = 20, 11


def embedding_split(run: FinishedRun, images: ImageSet) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
    """The split to show: val (labelled, what the study shows) when the run has it, else train with its answer key."""
    if run.val_embedding is not None:
        return "val", run.val_embedding, run.val_clusters, images.val_labels
    return "train", run.train_embedding, run.train_clusters, images.train_labels


def cluster_colours(labels: np.ndarray | None, clusters: np.ndarray) -> tuple[dict[int, int], dict[int, int]]:
    """Each cluster's palette index and, when labels exist, the class it is matched to.

    A cluster takes the colour of the class the Hungarian matching names it after, so where the two
    embedding panels agree they look alike and every disagreement stands out.
    """
    cluster_ids = [int(c) for c in np.unique(clusters)]
    matched = matching(labels, clusters) if labels is not None else {}
    colour_of = {c: matched[c] for c in cluster_ids if c in matched}
    spare = int(labels.max()) + 1 if labels is not None else 0  # past every class's colour
    for c in cluster_ids:
        if c not in colour_of:
            colour_of[c] = spare
            spare += 1
    return colour_of, matched


def _scatter_groups(
    axes: Axes,
    points: np.ndarray,
    groups: np.ndarray,
    names: dict[int, str],
    colours: dict[int, int],
    palette_size: int,
    short_names: dict[int, str],
) -> None:
    """One scatter per group; past :data:`CENTRE_LABELS_FROM` groups each also named at its median point."""
    for group in sorted(names):
        member = groups == group
        palette_index = colours[group]
        axes.scatter(
            points[member, 0],
            points[member, 1],
            s=9 if len(points) < 5000 else 4,
            alpha=0.75,
            linewidths=0,
            color=colour(palette_index, palette_size),
            marker=marker(palette_index, palette_size),
            label=f"{names[group]} ({int(member.sum())})",
        )
    if len(names) >= CENTRE_LABELS_FROM:
        # The median, not the mean: a cluster split in two pieces still gets its label on one of them.
        outline = [patheffects.withStroke(linewidth=2.5, foreground="white")]
        for group in sorted(names):
            member = groups == group
            if member.any():
                x, y = np.median(points[member], axis=0)
                axes.text(x, y, short_names[group], fontsize=8, ha="center", va="center", path_effects=outline)


def _legend_columns(entries: int) -> int:
    return min(entries, 3) if entries <= 6 else 2  # long names ("cluster 12 ≈ automobile (804)") fit two abreast


def _legend_rows(entries: int) -> int:
    return 0 if entries > LEGEND_LIMIT else math.ceil(entries / _legend_columns(entries))


def _legend_below(axes: Axes, title: str, entries: int) -> None:
    if entries > LEGEND_LIMIT:
        return  # every group is named at its centre instead
    axes.legend(
        title=title,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncol=_legend_columns(entries),
        markerscale=2.2,
        frameon=False,
        fontsize="medium" if entries <= 6 else "small",
    )


def embedding_figure(run: FinishedRun, images: ImageSet, names: list[str] | None) -> Figure:
    """The 2-D embedding coloured by true class (when known) beside the same points coloured by predicted cluster."""
    split, embedding, clusters, labels = embedding_split(run, images)
    axis_name = EMBEDDER_AXES.get(run.config.cluster.embedder, "dimension")
    space = "2-D embedding"
    if embedding.shape[1] > 2:
        # Without a 2-D embedder the clusters live in many dimensions; their first two principal components show
        # the most of that space, where two raw coordinates would show an arbitrary slice.
        space = f"first two principal components of the {embedding.shape[1]}-D clustered space"
        embedding, axis_name = PCA(n_components=2, random_state=0).fit_transform(embedding), "principal component"
    panels = 2 if labels is not None else 1
    entries = [len(np.unique(clusters))] + ([] if labels is None else [len(np.unique(labels))])
    legend_rows = max(_legend_rows(count) for count in entries)
    # A long legend gets room of its own below the plots, which keep their size.
    figure = new_figure(5.4 * panels, 5.6 + 0.2 * max(0, legend_rows - 2))
    axes = figure.subplots(1, panels, sharex=True, sharey=True, squeeze=False)[0]
    colour_of, matched = cluster_colours(labels, clusters)
    # One palette for both panels, big enough for every class and every unmatched cluster, so that a class
    # and the cluster matched to it share a colour.
    palette_size = max(colour_of.values()) + 1
    if labels is not None:
        classes = {int(c): class_name(names, int(c)) for c in np.unique(labels)}
        _scatter_groups(axes[0], embedding, labels, classes, {c: c for c in classes}, palette_size, classes)
        axes[0].set_title(f"coloured by true class ({split})")
        _legend_below(axes[0], "true class", len(classes))
    cluster_names = {
        c: f"cluster {c} ≈ {class_name(names, matched[c])}" if c in matched else f"cluster {c}" for c in colour_of
    }
    _scatter_groups(
        axes[-1], embedding, clusters, cluster_names, colour_of, palette_size, {c: str(c) for c in colour_of}
    )
    shown = len(cluster_names) if len(cluster_names) == run.k else f"{len(cluster_names)} of the {run.k}"
    title = f"coloured by predicted cluster ({run.clusterer}, {shown} clusters)"
    if len(cluster_names) > LEGEND_LIMIT:
        title += "\neach cluster's number at its centre"
    axes[-1].set_title(title)
    _legend_below(
        axes[-1], "predicted cluster (≈ matched class)" if matched else "predicted cluster", len(cluster_names)
    )
    for panel in axes:
        panel.set_xlabel(f"{axis_name} 1")
        panel.set_ylabel(f"{axis_name} 2")
    figure.suptitle(f"{run.label}: {split} images in the {space} ({len(embedding)} points)")
    return figure


def accuracy_rule(classes: int, k: int) -> str:
    """How accuracy is scored for this many classes and clusters (as :func:`aeclust.metrics.accuracy_of` does)."""
    return "max(acc, 1 − acc)" if classes == 2 and k <= 2 else "Hungarian-matched"


def history_figure(run: FinishedRun, images: ImageSet | None = None) -> Figure:
    """Train MSE (left axis) and val accuracy (right axis) at every checkpoint.

    With the val labels at hand, the accuracy axis also shows the largest class's share: what a clustering
    blind to the images reaches (everything in one cluster), 0.5 for two even classes but 0.1 for ten.
    """
    figure = new_figure(7.5, 4.6)
    axes = figure.subplots()
    epochs = [record.epoch for record in run.history]
    val_accuracy = [record.val_accuracy for record in run.history]
    # The train MSE is measured every mse_every epochs (and after the last); the line joins those it has.
    measured = [record for record in run.history if not math.isnan(record.train_mse)]
    handles = axes.plot(
        [record.epoch for record in measured], [record.train_mse for record in measured], color=MSE_COLOUR,
        marker="o", label="train MSE (all train images, [-1, 1] space)",
    )  # fmt: skip
    axes.set_ylabel("train MSE", color=MSE_COLOUR)
    axes.tick_params(axis="y", colors=MSE_COLOUR)
    if any(not math.isnan(value) for value in val_accuracy):
        twin = axes.twinx()
        val_labels = images.val_labels if images is not None else None
        rule = f", {accuracy_rule(len(np.unique(val_labels)), run.k)}" if val_labels is not None else ""
        scored = [(epoch, value) for epoch, value in zip(epochs, val_accuracy) if not math.isnan(value)]
        handles += twin.plot(
            [epoch for epoch, _ in scored],
            [value for _, value in scored],
            color=ACCURACY_COLOUR,
            marker="s",
            linestyle="--",
            label=f"val accuracy of the whole clustering pipeline (k = {run.k}{rule})",
        )
        if val_labels is not None:
            chance = np.bincount(np.unique(val_labels, return_inverse=True)[1]).max() / len(val_labels)
            handles.append(
                twin.axhline(
                    chance,
                    color=ACCURACY_COLOUR,
                    linestyle=":",
                    linewidth=1.2,
                    label=f"largest class's share of val ({chance:.2f}): a clustering blind to the images",
                )
            )
        twin.set_ylabel("val accuracy", color=ACCURACY_COLOUR)
        twin.tick_params(axis="y", colors=ACCURACY_COLOUR)
    else:
        axes.text(
            0.5, 0.5, "no val images: no accuracy to plot", transform=axes.transAxes, ha="center", color="#555555"
        )
    if not epochs:
        axes.text(0.5, 0.4, "no epochs trained", transform=axes.transAxes, ha="center", color="#555555")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    figure.suptitle(f"{run.label}: training, {len(epochs)} checkpoints")
    return figure


@dataclass(frozen=True)
class MatrixLayout:
    """How big a confusion matrix's cells are drawn and what they say, by how many rows and columns it has."""

    column_inches: float
    row_inches: float
    cell_text: str  # "count and share", "count" or "" (colour alone)
    fontsize: float
    side_by_side: bool  # val and train panels beside each other, else one above the other


def matrix_layout(rows: int, columns: int) -> MatrixLayout:
    """Numbers in cells while they fit: two lines up to 12 rows and columns, the count alone up to 25, then none.

    Past 12 columns the panels are stacked, so a 50-cluster matrix stays about 12 inches wide and its tick labels
    stay legible when the page scales the figure to its width.
    """
    cells = max(rows, columns)
    if cells <= 12:
        return MatrixLayout(1.1, 0.8, "count and share", 9, True)
    if cells <= 25:
        return MatrixLayout(0.42, 0.42, "count", 6.5, False)
    return MatrixLayout(0.19, 0.3, "", 0, False)


def _confusion_panel(
    axes: Axes, labels: np.ndarray, clusters: np.ndarray, k: int, names: list[str] | None, title: str
):
    classes = np.unique(labels)
    matched = matching(labels, clusters)
    # Columns in the order of their matched classes, so agreement runs down the diagonal; unmatched clusters last.
    class_rank = {int(c): rank for rank, c in enumerate(classes)}
    cluster_ids = sorted(
        {int(c) for c in np.union1d(np.arange(k), np.unique(clusters))},
        key=lambda c: (class_rank[matched[c]], c) if c in matched else (len(classes), c),
    )
    column_of = {c: column for column, c in enumerate(cluster_ids)}
    counts = np.zeros((len(classes), len(cluster_ids)), dtype=np.int64)
    np.add.at(counts, (np.searchsorted(classes, labels), [column_of[int(c)] for c in clusters]), 1)
    layout = matrix_layout(*counts.shape)
    image = axes.imshow(counts, cmap=SEQUENTIAL_MAP, vmin=0, aspect="auto")
    row_totals = counts.sum(axis=1, keepdims=True)
    threshold = counts.max() / 2
    for (row, column), count in np.ndenumerate(counts):
        if not layout.cell_text:
            break
        share = count / row_totals[row, 0] if row_totals[row, 0] else 0.0
        axes.text(
            column,
            row,
            f"{count}\n{share:.0%}" if layout.cell_text == "count and share" else str(count),
            ha="center",
            va="center",
            fontsize=layout.fontsize,
            color="black" if count > threshold else "white",  # cividis is light at the top, dark at the bottom
        )
    axes.set_xticks(range(len(cluster_ids)))
    if layout.side_by_side:
        axes.set_xticklabels(
            [f"{c}\n≈ {class_name(names, matched[c])}" if c in matched else str(c) for c in cluster_ids]
        )
    else:  # too narrow for two lines across: one line, turned upright
        axes.set_xticklabels(
            [f"{c} ≈ {class_name(names, matched[c])}" if c in matched else str(c) for c in cluster_ids],
            rotation=90,
            fontsize=8,
        )
    axes.set_yticks(range(len(classes)))
    axes.set_yticklabels([class_name(names, int(c)) for c in classes], fontsize=None if layout.side_by_side else 8)
    axes.set_xlabel("predicted cluster (≈ matched class)")
    axes.set_ylabel("true class")
    axes.set_title(title)
    return image


def confusion_figure(run: FinishedRun, images: ImageSet, names: list[str] | None) -> Figure | None:
    """True class × predicted cluster, for val and (with an answer key) train; None when no labels exist."""
    panels = []
    if run.val_clusters is not None:
        panels.append((f"val ({len(run.val_clusters)} images)", images.val_labels, run.val_clusters))
    if images.train_labels is not None:
        panels.append(
            (f"train, by the answer key ({len(run.train_clusters)} images)", images.train_labels, run.train_clusters)
        )
    if not panels:
        return None
    rows = max(len(np.unique(labels)) for _, labels, _ in panels)
    columns = max(run.k, *(int(clusters.max()) + 1 for _, _, clusters in panels))
    layout = matrix_layout(rows, columns)
    panel_width = max(4.8, layout.column_inches * columns + 2.6)
    panel_height = max(3.6, layout.row_inches * rows + (2.4 if layout.side_by_side else 3.0))
    across, down = (len(panels), 1) if layout.side_by_side else (1, len(panels))
    figure = new_figure(panel_width * across, panel_height * down)
    for axes, (title, labels, clusters) in zip(figure.subplots(down, across, squeeze=False).flat, panels):
        image = _confusion_panel(axes, labels, clusters, run.k, names, title)
        figure.colorbar(image, ax=axes, label="images (count)", shrink=0.85)
    what = {
        "count and share": "cell: images, and share of the true class",
        "count": "cell: images",
        "": "colour: images; too many cells to number",
    }[layout.cell_text]
    figure.suptitle(f"{run.label}: confusion matrix ({what})")
    return figure
