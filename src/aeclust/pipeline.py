"""``run(config)``: data → train → latents → cluster → metrics and files, in one run directory."""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from aeclust.cluster import CLUSTERERS, Clustering, cluster_latents
from aeclust.config import RunConfig
from aeclust.data import ImageSet, load_images
from aeclust.embed import LATENT_MODES, SCALINGS
from aeclust.errors import ConfigError, RunDirError, unknown_name
from aeclust.io import save_npy_atomic, write_text_atomic
from aeclust.metrics import accuracy_of, clustering_scores
from aeclust.models import ARCHITECTURES
from aeclust.reduce import EMBEDDERS, REDUCERS
from aeclust.refine import BALANCES, NeighbourRefiner
from aeclust.train import SCHEDULES, Trainer, check_views, log

CONFIG_FILE, METRICS_FILE, PREDICTION_FILE = "config.json", "metrics.json", "prediction.csv"


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    train_clusters: np.ndarray
    history: list = field(default_factory=list)


def new_run_dir(out: str | Path | None, model_name: str) -> Path:
    """A directory that does not exist yet: ``out`` itself, or ``out-2``, ``out-3``… beside it."""
    if out is None:
        out = Path("runs") / f"{model_name}-{datetime.now():%Y%m%d-%H%M%S}"
    out = Path(out)
    candidate, n = out, 1
    while candidate.exists():
        n += 1
        candidate = out.with_name(f"{out.name}-{n}")
    if candidate != out:
        log(f"{out} exists already; writing this run to {candidate} instead (--resume continues it, --force replaces it)")
    return candidate


def check_names(config: RunConfig) -> None:
    """Refuse an unknown architecture or stage name before any data is loaded or any epoch trained."""
    cluster = config.cluster
    for kind, name, known in (
        ("architecture", config.model.arch, ARCHITECTURES),
        ("latent mode", cluster.latent, LATENT_MODES),
        ("scaling", cluster.scaling, SCALINGS),
        ("schedule", config.train.schedule, SCHEDULES),
        ("reducer", cluster.reducer, REDUCERS),
        ("embedder", cluster.embedder, EMBEDDERS),
        ("clusterer", cluster.clusterer, CLUSTERERS),
        ("refine balance", config.refine.balance, BALANCES),
    ):
        if name not in known:
            raise unknown_name(kind, name, list(known))


def check_config(config: RunConfig, images: ImageSet) -> None:
    n = len(images.train_images)
    where = images.source or images.name
    if not 2 <= config.cluster.k <= n:
        raise ConfigError(f"{where}: k={config.cluster.k} must be between 2 and the number of train images ({n})")
    if images.has_val and config.cluster.k > len(images.val_images):
        raise ConfigError(
            f"{where}: k={config.cluster.k} must not exceed the number of val images ({len(images.val_images)})"
        )
    refine = config.refine
    if refine.epochs < 0 or refine.neighbours < 1 or refine.batch_size < 1 or refine.anchors_per_epoch < 1:
        raise ConfigError(
            f"refine epochs={refine.epochs}, neighbours={refine.neighbours}, batch size={refine.batch_size}, "
            f"anchors per epoch={refine.anchors_per_epoch}: expected epochs >= 0 and the others >= 1"
        )
    if refine.self_label_epochs < 0 or not 0 < refine.confident_share <= 1:
        raise ConfigError(
            f"refine self-label epochs={refine.self_label_epochs}, confident share={refine.confident_share}: "
            "expected self-label epochs >= 0 and 0 < confident share <= 1"
        )
    check_views(config.model)
    if config.train.epochs < 0 or config.train.batch_size < 1 or config.train.lr <= 0:
        raise ConfigError(
            f"epochs={config.train.epochs}, batch size={config.train.batch_size}, lr={config.train.lr}: "
            "expected epochs >= 0, batch size >= 1 and lr > 0"
        )


def prepare_run_dir(
    config: RunConfig, out: str | Path | None, resume: bool, force: bool, threads: int | None = None
) -> tuple[RunConfig, Path]:
    """Pick the run directory and settle the configuration: a resumed run keeps the one it was started with."""
    if resume:
        run_dir = Path(out) if out is not None else None
        if run_dir is None or not (run_dir / CONFIG_FILE).is_file():
            raise RunDirError(f"{run_dir}: expected a run directory holding {CONFIG_FILE} to resume, found none")
        saved = RunConfig.load(run_dir / CONFIG_FILE)
        if config.train.epochs > saved.train.epochs:  # continuing a finished run for more epochs is allowed
            saved.train.epochs = config.train.epochs
        if threads is not None:  # a machine setting, free to differ from the first session's
            saved.threads = threads
        return saved, run_dir
    if force and out is not None and Path(out).exists():
        run_dir = Path(out)
        if any(run_dir.iterdir()) and not (run_dir / CONFIG_FILE).is_file():
            raise RunDirError(f"{run_dir}: --force replaces only an aeclust run directory; this one holds other files")
        shutil.rmtree(run_dir)
    else:
        run_dir = new_run_dir(out, config.model_name)
    run_dir.mkdir(parents=True)
    return config, run_dir


def write_predictions(path: Path, ids: list[str], clusters: np.ndarray) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "label"])
    writer.writerows(zip(ids, clusters.tolist()))
    write_text_atomic(path, buffer.getvalue())


def run(
    config: RunConfig,
    out: str | Path | None = None,
    *,
    images: ImageSet | None = None,
    resume: bool = False,
    force: bool = False,
    resume_threads: int | None = None,
) -> RunResult:
    """Train, cluster and score one model; write everything into a new run directory (or resume one).

    A resumed run keeps the settings it was started with, except a longer ``config.train.epochs`` and, when
    given, ``resume_threads``.
    """
    started = time.perf_counter()
    if resume:  # the saved settings say which data to load
        config, run_dir = prepare_run_dir(config, out, resume, force, resume_threads)
    check_names(config)
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    images = images if images is not None else load_images(config.data, image_size=config.image_size)
    timings["load_seconds"] = time.perf_counter() - mark
    check_config(config, images)
    if not resume:  # only now, so a bad input leaves no empty run directory behind and --force removes nothing
        config, run_dir = prepare_run_dir(config, out, resume, force)
    config.save(run_dir / CONFIG_FILE)
    log(f"run {run_dir}: model {config.model_name}, {len(images.train_images)} train images from {images.source}")

    trainer = Trainer(config, images, run_dir)
    if resume:
        trainer.resume()
    mark = time.perf_counter()
    history = trainer.fit()
    timings["train_seconds"] = sum(r.train_seconds for r in history)
    timings["epoch_eval_seconds"] = sum(r.eval_seconds for r in history)
    timings["this_session_train_seconds"] = time.perf_counter() - mark

    log("clustering train and val latents")
    mark = time.perf_counter()
    # The last epoch's history step encoded both sets and clustered val with this very model and seed;
    # a run resumed after its last epoch has no such step, so it encodes afresh.
    evaluation = trainer.latest_evaluation
    if evaluation is None or evaluation.epoch != trainer.epoch:
        evaluation = trainer.evaluate()
    train_latents = evaluation.train_latents
    metrics: dict = {"model": config.model_name, "seed": config.seed, "k": config.cluster.k, "epochs": trainer.epoch}
    metrics["train_mse"] = evaluation.train_mse
    outputs = {"train_latents.npy": train_latents}
    if images.has_val:
        metrics["val_mse"] = evaluation.val_mse
        outputs["val_latents.npy"] = evaluation.val_latents
    timings["latent_seconds"] = time.perf_counter() - mark

    mark = time.perf_counter()
    train_clustering = cluster_latents(train_latents, config.cluster, config.seed)
    timings["cluster_train_seconds"] = time.perf_counter() - mark
    timings |= {f"train_{stage}_step_seconds": seconds for stage, seconds in train_clustering.seconds.items()}
    val_clustering = evaluation.val_clustering
    if config.refine.total_epochs > 0:
        if images.train_labels is not None:
            metrics["train_accuracy_before_refine"] = accuracy_of(images.train_labels, train_clustering.clusters)
        if val_clustering is not None:
            metrics["val_accuracy_before_refine"] = accuracy_of(images.val_labels, val_clustering.clusters)
        log(
            f"refining the {config.cluster.k} clusters: {config.refine.epochs} epochs of neighbour consistency, "
            f"{config.refine.self_label_epochs} of self-labelling"
        )
        mark = time.perf_counter()
        refiner = NeighbourRefiner(
            trainer.model, images, config, train_clustering.clusters, run_dir / "checkpoints", trainer.epoch
        )
        if resume and refiner.resume():
            log(f"resuming the refinement after its epoch {refiner.epoch}")
        refined = refiner.fit(log)
        timings["refine_seconds"] = time.perf_counter() - mark
        train_clustering = Clustering(refined.train_features, refined.train_features, refined.train_clusters)
        if refined.val_clusters is not None:
            val_clustering = Clustering(refined.val_features, refined.val_features, refined.val_clusters)
    outputs |= {"train_embedding.npy": train_clustering.embedding, "train_clusters.npy": train_clustering.clusters}
    write_predictions(run_dir / PREDICTION_FILE, images.ids(), train_clustering.clusters)
    metrics["cluster_sizes"] = np.bincount(train_clustering.clusters, minlength=config.cluster.k).tolist()
    if images.train_labels is not None:
        metrics["train_accuracy"] = accuracy_of(images.train_labels, train_clustering.clusters)
        metrics["train_scores"] = clustering_scores(images.train_labels, train_clustering.clusters)
    if images.has_val:
        outputs |= {"val_embedding.npy": val_clustering.embedding, "val_clusters.npy": val_clustering.clusters}
        metrics["val_accuracy"] = accuracy_of(images.val_labels, val_clustering.clusters)
        metrics["val_scores"] = clustering_scores(images.val_labels, val_clustering.clusters)
    for name, array in outputs.items():
        save_npy_atomic(run_dir / "arrays" / name, array)
    timings["total_seconds"] = time.perf_counter() - started
    metrics["timings"] = timings
    metrics["class_names"] = images.class_names
    write_text_atomic(run_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    return RunResult(run_dir, metrics, train_clustering.clusters, history)
