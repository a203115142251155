"""Finished run directories read back for a report: settings, scores, history, arrays, and the images they used."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aeclust.config import RunConfig
from aeclust.data import ImageSet, load_images
from aeclust.encoders.records import EpochRecord
from aeclust.errors import InputError, RunDirError
from aeclust.pipeline.rundir import REPORT_NEEDS, RunDir


@dataclass
class KSelection:
    """How a run chose its number of clusters: ``metrics.json``'s ``k_selection``, when k was chosen automatically."""

    criterion: str
    scores: dict[int, float]  # the criterion's value at every k tried (NaN where it could not be computed)
    chosen: int
    reason: str
    k_range: tuple[int, int] | None = None


def typicality_order(embedding: np.ndarray, clusters: np.ndarray, cluster: int) -> np.ndarray:
    """The cluster's members, closest to the cluster's centre first.

    Distance is measured in the 2-D embedding, not in the reduced features, because the embedding is the space
    the clusterer partitioned: with k-means (the default) the centre is the clusterer's own centroid, so
    "typical" means what decided the assignment. The reduced features (200-D after KernelPCA) are not kept in a run, and in that many dimensions
    distances crowd together, so near and far would differ less. t-SNE keeps neighbourhoods rather than global
    distances: the least typical images are those on the cluster's rim, often next to another cluster, which
    are the borderline cases a user wants to see.
    """
    members = np.flatnonzero(clusters == cluster)
    centre = embedding[members].mean(axis=0)
    distance = np.linalg.norm(embedding[members] - centre, axis=1)
    return members[np.argsort(distance, kind="stable")]


@dataclass
class FinishedRun:
    """One run directory's outputs; ``label`` is how the report names it (the model, made unique)."""

    run_dir: Path
    config: RunConfig
    metrics: dict
    history: list[EpochRecord]
    train_embedding: np.ndarray
    train_clusters: np.ndarray
    val_embedding: np.ndarray | None
    val_clusters: np.ndarray | None
    label: str
    train_ids: list[str] | None = None  # prediction.csv's ids, one per train image, when the run has the file
    k_selection: KSelection | None = None
    # A predict directory's: how surely each image sits in its cluster (it has no embedding to measure by), and how
    # the browser names its images and their order.
    confidence: np.ndarray | None = None
    images_word: str = "train images"
    order_note: str = "closest to the cluster's centre first"

    def members_in_order(self, cluster: int) -> np.ndarray:
        """The cluster's images, most typical first."""
        if self.confidence is not None:
            members = np.flatnonzero(self.train_clusters == cluster)
            return members[np.argsort(-self.confidence[members], kind="stable")]
        return typicality_order(self.train_embedding, self.train_clusters, cluster)

    @property
    def checkpoint(self) -> Path:
        return RunDir(self.run_dir).last_checkpoint

    @property
    def clusterer(self) -> str:
        """The clusterer that made the clusters: for the "auto" clusterer, the one it chose."""
        chosen = self.metrics.get("clusterer_choice", {}).get("chosen")
        return f"{chosen} (auto)" if chosen else self.config.cluster.clusterer

    @property
    def k(self) -> int:
        """The number of clusters asked for, or found, whichever is more (a cluster may have come out empty)."""
        asked = self.k_selection.chosen if self.k_selection is not None else self.config.cluster.k
        found = int(self.train_clusters.max()) + 1
        return max(asked, found) if isinstance(asked, int) else found


def load_run(path: str | Path) -> FinishedRun:
    """Read a finished run directory, or raise :class:`RunDirError` naming what is missing."""
    directory = RunDir(path).check_finished(REPORT_NEEDS)
    config = directory.read_config()
    metrics = directory.read_metrics()
    history = directory.read_history()
    train_embedding = directory.load_array("train_embedding")
    train_clusters = directory.load_array("train_clusters")
    val_embedding = val_clusters = None
    if directory.array("val_embedding").is_file() or directory.array("val_clusters").is_file():
        val_embedding = directory.load_array("val_embedding")
        val_clusters = directory.load_array("val_clusters")
    for embedding, clusters, split in (
        (train_embedding, train_clusters, "train"),
        (val_embedding, val_clusters, "val"),
    ):
        if embedding is not None and (embedding.ndim != 2 or len(embedding) != len(clusters)):
            raise RunDirError(
                f"{directory.path}: {split} embedding has shape {embedding.shape} but there are {len(clusters)} "
                f"{split} clusters; expected one embedded point per image"
            )
    return FinishedRun(
        directory.path,
        config,
        metrics,
        history,
        train_embedding,
        train_clusters,
        val_embedding,
        val_clusters,
        config.model_name,
        train_ids=directory.read_prediction_ids(len(train_clusters)),
        k_selection=_read_k_selection(metrics, directory.metrics),
    )


def _read_k_selection(metrics: dict, path: Path) -> KSelection | None:
    """``metrics["k_selection"]`` checked and typed, or :class:`RunDirError` saying what is wrong with it."""
    if "k_selection" not in metrics:
        return None
    expected = (
        'expected "k_selection" to hold "criterion", "scores" ({"2": value, ...}), "chosen" (one of the k in '
        'scores) and "reason"'
    )
    found = metrics["k_selection"]
    try:
        scores = {int(k): math.nan if value is None else float(value) for k, value in found["scores"].items()}
        selection = KSelection(
            str(found["criterion"]), dict(sorted(scores.items())), int(found["chosen"]), str(found["reason"])
        )
        if "k_range" in found:
            low, high = found["k_range"]
            selection.k_range = (int(low), int(high))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise RunDirError(f"{path}: {expected}; could not read it ({type(error).__name__}: {error})") from None
    if selection.chosen not in selection.scores:
        raise RunDirError(f"{path}: {expected}; found chosen k = {selection.chosen}, not among {list(scores)}")
    return selection


@contextlib.contextmanager
def runs_held(paths: Sequence[str | Path]) -> Iterator[None]:
    """Hold every finished run of ``paths`` for reading (:meth:`RunDir.read_held`) until the block ends, so that no
    run is resumed, and none still being written is read, while a report reads it (its checkpoint included)."""
    with contextlib.ExitStack() as hold:
        for path in paths:
            hold.enter_context(RunDir(path).check_finished(REPORT_NEEDS).read_held())
        yield


def load_runs(paths: Sequence[str | Path]) -> list[FinishedRun]:
    """Read every run; runs of the same model are told apart by their directory's name."""
    if not paths:
        raise InputError("expected at least one run directory, found none")
    runs = [load_run(path) for path in paths]
    names = [run.label for run in runs]
    for run in runs:
        if names.count(run.label) > 1:
            run.label = f"{run.config.model_name} ({run.run_dir.name})"
    return runs


def images_for(runs: Sequence[FinishedRun], images: ImageSet | None = None) -> ImageSet:
    """The images the runs were made from (``images`` when given), checked against every run's arrays."""
    if images is None:
        sources = sorted({_data_of(run.config) for run in runs}, key=str)
        if len(sources) > 1:
            places = sorted({data for data, _ in sources})
            described = places if len(places) > 1 else [f"{data} at {size}×{size}" for data, size in sources]
            raise InputError(
                f"the runs use different data ({', '.join(described)}); expected runs on the same data, "
                "or pass the images with --data"
            )
        data, image_size = sources[0]
        images = load_images(data) if image_size is None else load_images(data, image_size=image_size)
    for run in runs:
        check_images_match(run, images)
    return images


def _data_of(config: RunConfig) -> tuple[str, int | None]:
    # Runs of aeclust versions that resize images record the size in config.image_size; load at that size.
    return config.data, getattr(config, "image_size", None)


def check_images_match(run: FinishedRun, images: ImageSet) -> None:
    where = images.source or images.name
    if len(images.train_images) != len(run.train_clusters):
        raise InputError(
            f"{run.run_dir}: the run clustered {len(run.train_clusters)} train images but {where} has "
            f"{len(images.train_images)}; expected the data the run was made from"
        )
    if run.val_clusters is not None and (not images.has_val or len(images.val_images) != len(run.val_clusters)):
        found = len(images.val_images) if images.has_val else "no"
        raise InputError(
            f"{run.run_dir}: the run clustered {len(run.val_clusters)} val images but {where} has {found} val images; "
            "expected the data the run was made from"
        )


def class_names(run: FinishedRun, images: ImageSet) -> list[str] | None:
    """The class names recorded by the run, else the images', else None (the report then shows numbers)."""
    return run.metrics.get("class_names") or images.class_names
