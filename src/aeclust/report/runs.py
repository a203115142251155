"""Finished run directories read back for a report: settings, scores, history, arrays, and the images they used."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aeclust.config import RunConfig
from aeclust.data import ImageSet, load_images
from aeclust.data.images import load_npy
from aeclust.errors import InputError, RunDirError
from aeclust.pipeline import CONFIG_FILE, METRICS_FILE
from aeclust.train import LAST_CHECKPOINT, EpochRecord, read_history

HISTORY_FILE = "history.csv"
CHECKPOINT = f"checkpoints/{LAST_CHECKPOINT}"
TRAIN_EMBEDDING, TRAIN_CLUSTERS = "arrays/train_embedding.npy", "arrays/train_clusters.npy"
VAL_EMBEDDING, VAL_CLUSTERS = "arrays/val_embedding.npy", "arrays/val_clusters.npy"
# What pipeline.run leaves behind once a run has finished; val arrays exist only when the data had val images.
REQUIRED_FILES = (CONFIG_FILE, METRICS_FILE, HISTORY_FILE, CHECKPOINT, TRAIN_EMBEDDING, TRAIN_CLUSTERS)


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

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT


def load_run(path: str | Path) -> FinishedRun:
    """Read a finished run directory, or raise :class:`RunDirError` naming what is missing."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        found = "a file" if run_dir.exists() else "nothing there"
        raise RunDirError(f"{run_dir}: expected a finished aeclust run directory, found {found}")
    missing = [name for name in REQUIRED_FILES if not (run_dir / name).is_file()]
    if missing:
        raise RunDirError(f"{run_dir}: not a finished aeclust run directory; missing {', '.join(missing)}")
    config = RunConfig.load(run_dir / CONFIG_FILE)
    metrics = _read_json(run_dir / METRICS_FILE)
    try:
        history = read_history(run_dir / HISTORY_FILE)
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise RunDirError(
            f"{run_dir / HISTORY_FILE}: expected aeclust's per-epoch history, could not read it ({error})"
        ) from None
    train_embedding = load_npy(run_dir / TRAIN_EMBEDDING, "train embedding")
    train_clusters = load_npy(run_dir / TRAIN_CLUSTERS, "train clusters")
    val_embedding = val_clusters = None
    if (run_dir / VAL_EMBEDDING).is_file() or (run_dir / VAL_CLUSTERS).is_file():
        val_embedding = load_npy(run_dir / VAL_EMBEDDING, "val embedding")
        val_clusters = load_npy(run_dir / VAL_CLUSTERS, "val clusters")
    for embedding, clusters, split in (
        (train_embedding, train_clusters, "train"),
        (val_embedding, val_clusters, "val"),
    ):
        if embedding is not None and (embedding.ndim != 2 or len(embedding) != len(clusters)):
            raise RunDirError(
                f"{run_dir}: {split} embedding has shape {embedding.shape} but there are {len(clusters)} {split} "
                "clusters; expected one embedded point per image"
            )
    return FinishedRun(
        run_dir,
        config,
        metrics,
        history,
        train_embedding,
        train_clusters,
        val_embedding,
        val_clusters,
        config.model_name,
    )


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


def _read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirError(f"{path}: expected aeclust's metrics (JSON), could not read it ({error})") from None
    if not isinstance(values, dict):
        raise RunDirError(f"{path}: expected aeclust's metrics (a JSON object), found a {type(values).__name__}")
    return values
