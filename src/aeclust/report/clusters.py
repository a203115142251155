"""The clusters as a whole: what each holds, how they merge as k falls, and how k was chosen."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.cluster.hierarchy import dendrogram, linkage

from aeclust.report.runs import FinishedRun, KSelection
from aeclust.report.style import OKABE_ITO, class_name, new_figure

CHOSEN_COLOUR = OKABE_ITO[5]  # vermillion: the chosen k stands out from the blue curve


@dataclass(frozen=True)
class ClusterSummary:
    """One train cluster: its size and, with an answer key, its most common class and that class's share."""

    cluster: int
    size: int
    share: float  # of all train images
    majority: int | None = None
    purity: float | None = None

    def describe(self, names: list[str] | None) -> str:
        """``majority class (purity)``, or an empty string without an answer key."""
        if self.majority is None:
            return ""
        return f"{class_name(names, self.majority)} {self.purity:.0%}"


def summarise_clusters(clusters: np.ndarray, labels: np.ndarray | None) -> list[ClusterSummary]:
    """Every cluster that holds an image, in order of its number."""
    summaries = []
    for cluster in np.unique(clusters):
        member = clusters == cluster
        size = int(member.sum())
        majority = purity = None
        if labels is not None:
            classes, counts = np.unique(labels[member], return_counts=True)
            majority, purity = int(classes[counts.argmax()]), float(counts.max() / size)
        summaries.append(ClusterSummary(int(cluster), size, size / len(clusters), majority, purity))
    return summaries


def cluster_centres(features: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cluster numbers that hold images, and each one's mean feature vector."""
    ids, members = np.unique(clusters, return_inverse=True)
    sums = np.zeros((len(ids), features.shape[1]))
    np.add.at(sums, members, features)
    return ids, sums / np.bincount(members)[:, None]


def merge_tree_figure(run: FinishedRun, labels: np.ndarray | None, names: list[str] | None) -> Figure | None:
    """A dendrogram of the train clusters' centres (Ward linkage); None for a run with a single cluster.

    The centres are taken in the space the clusterer partitioned (``train_embedding``), so two clusters the tree
    joins early are ones k-means would be first to merge with a smaller k. Ward linkage on the centres alone
    weighs every cluster the same, whatever its size: the tree shows which groups of images look alike, not which
    merge would cost the least squared error over all images.
    """
    ids, centres = cluster_centres(run.train_embedding, run.train_clusters)
    if len(ids) < 2:
        return None
    summaries = {summary.cluster: summary for summary in summarise_clusters(run.train_clusters, labels)}
    leaf_labels = []
    for cluster in ids:
        summary = summaries[int(cluster)]
        described = summary.describe(names)
        images = "image" if summary.size == 1 else "images"
        leaf_labels.append(f"{cluster}: {summary.size} {images}" + (f", {described}" if described else ""))
    tree = linkage(centres, method="ward")
    figure = new_figure(8.0, max(3.0, 0.26 * len(ids) + 1.4))
    axes = figure.subplots()
    # Drawn sideways, so that every leaf's label reads horizontally even with 50 leaves.
    dendrogram(
        tree,
        orientation="left",
        labels=leaf_labels,
        ax=axes,
        color_threshold=0,
        above_threshold_color="#333333",
        leaf_font_size=9,
    )
    axes.set_xlabel("Ward linkage distance between cluster centres (joined nearer the leaves = more alike)")
    axes.spines[["top", "right", "left"]].set_visible(False)
    axes.grid(axis="x", alpha=0.3)
    with_classes = " and most common true class (its share)" if labels is not None else ""
    figure.suptitle(
        f"{run.label}: how the {len(ids)} clusters merge as k falls\n"
        f"(leaf: cluster, train images{with_classes})",
        fontsize=11,
    )
    return figure


def k_selection_figure(run: FinishedRun) -> Figure | None:
    """The criterion that chose k, at every k tried, with the chosen k marked; None when k was given by hand."""
    selection: KSelection | None = run.k_selection
    if selection is None:
        return None
    ks = list(selection.scores)
    values = [selection.scores[k] for k in ks]
    figure = new_figure(7.5, 4.2)
    axes = figure.subplots()
    axes.plot(ks, values, marker="o", color=OKABE_ITO[0], label=selection.criterion)
    chosen_value = selection.scores[selection.chosen]
    axes.axvline(selection.chosen, color=CHOSEN_COLOUR, linestyle="--", linewidth=1.2)
    if not math.isnan(chosen_value):
        axes.plot([selection.chosen], [chosen_value], marker="o", markersize=11, color=CHOSEN_COLOUR, zorder=3)
    axes.annotate(
        f"chosen: k = {selection.chosen}",
        xy=(selection.chosen, 0.0),
        xycoords=("data", "axes fraction"),
        xytext=(5, 5),
        textcoords="offset points",
        va="bottom",
        color=CHOSEN_COLOUR,
    )
    axes.set_xlabel("k (number of clusters)")
    axes.set_ylabel(selection.criterion)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    low_high = selection.k_range
    tried = f"k from {low_high[0]} to {low_high[1]}" if low_high else f"{len(ks)} values of k"
    figure.suptitle(f"{run.label}: choosing k by {selection.criterion} ({tried})", fontsize=11)
    figure.supxlabel(textwrap.fill(selection.reason, 110), fontsize=9, color="#444444")  # the PNG read on its own
    return figure
