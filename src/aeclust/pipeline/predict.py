"""Assign new images to a finished run's clusters, without training or clustering again.

A run that refined its clusters predicts through its refined encoder and cluster head, exactly as it labelled its own
train images. A run without refinement (the study's pipeline) assigns each image to the nearest centre of the run's
clusters, in the feature space its clustering stage started from (latents, pooled or flattened, scaled with the train
images' statistics): t-SNE and UMAP have no faithful way to place new points, and the 2-D embedding is only a view.
A run cut by whitened-kmeans places each image in each of the cut's whitened spaces (linear, so exactly as the train
images were placed) and takes the cluster most of them give.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aeclust.cluster.stage import ClusteringStage
from aeclust.config import RunConfig
from aeclust.data import ImageSet, load_images
from aeclust.encoders.autoencoder import load_model
from aeclust.encoders.registry import load_encoder
from aeclust.errors import ConfigError, RunDirError
from aeclust.metrics import accuracy_of, clustering_scores
from aeclust.pipeline.rundir import PREDICT_NEEDS, RunDir
from aeclust.refine.scan import ClusterModel, load_refined
from aeclust.runtime.engine import Engine, resolve_device, set_threads
from aeclust.runtime.infer import infer
from aeclust.runtime.io import release_pages
from aeclust.runtime.progress import Progress, log

INFERENCE_CHUNK = 4000  # images encoded, then assigned, at a time: whole inference batches, as the run encoded them


@dataclass
class Prediction:
    """Clusters of new images; ``method`` says how they were assigned."""

    clusters: np.ndarray
    ids: list[str]
    method: str  # "refined head" or "nearest centre"
    run_dir: Path | None = None  # where it was written, when it was
    metrics: dict | None = None


def most_probable(probabilities: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each image's most probable cluster under the refined head, and that probability."""
    confidence, clusters = probabilities.max(1)
    return clusters.numpy(), confidence.numpy()


def refined_model(run: RunDir, config: RunConfig, engine: Engine) -> ClusterModel | None:
    """The run's refined encoder and cluster head, when its refinement finished; else None."""
    if not run.refine_checkpoint.is_file():
        return None
    refined = load_refined(run.path, load_model(run.last_checkpoint)[0], config.refine.total_epochs)
    return None if refined is None else refined.to(engine.device)


def clustering_stage(run: RunDir, config: RunConfig, train_clusters: np.ndarray) -> ClusteringStage:
    """The run's saved clustering stage (``centres.npz``); a run from before runs saved it, its stage fitted again
    to its train latents and clusters."""
    if run.centres.is_file():
        return ClusteringStage.load(run.centres)
    if not run.array("train_latents").is_file():
        raise RunDirError(f"{run.path}: expected arrays/train_latents.npy to place new images by, found none")
    stage = ClusteringStage(config.cluster, seed=config.seed)
    return stage.fit_placer(run.load_array("train_latents", mmap=True), train_clusters)


def predict(
    run_dir: str | Path,
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    images: ImageSet | None = None,
    device: str | None = None,
    write: bool = True,
) -> Prediction:
    """Assign the images of ``data`` (any source ``aeclust run --data`` takes) to the finished run's clusters.

    With ``write``, a new directory (default ``RUN_DIR-predict``, never overwritten) gets ``prediction.csv``
    (``id,label``: each image's path or index) and ``metrics.json`` (how many, how assigned, cluster sizes, and
    with an answer key the scores).
    """
    started = time.perf_counter()
    run = RunDir(run_dir).check_finished(PREDICT_NEEDS)
    if images is None and data is None:
        raise ConfigError("predict: expected --data (the images to assign), found none")
    with run.read_held():  # all the run gives is read here, whole; it is let go before the images are assigned
        config = run.read_config()
        set_threads(config.threads)
        engine = Engine(resolve_device(device or config.device))
        train_clusters = run.load_array("train_clusters")
        head_model = refined_model(run, config, engine)
        if head_model is not None:
            method = "refined head"
            model: torch.nn.Module = head_model
            assign: Callable[[torch.Tensor | np.ndarray], tuple[np.ndarray, np.ndarray]] = most_probable
            outputs = ("probabilities",)
        else:
            method = "nearest centre"
            model = load_encoder(run.path, engine.device).module_
            assign = clustering_stage(run, config, train_clusters).place
            outputs = ("latents",)
    if images is None:
        images = load_images(data, image_size=config.image_size)
    log(f"predict {len(images.train_images)} images from {images.source or images.name} by the run's {method}")
    clusters, confidences = [], []
    total = len(images.train_images)
    progress = Progress(total, "predict", "image", enabled=engine.is_main)
    for start in range(0, total, INFERENCE_CHUNK):
        chunk = images.train_images[start : start + INFERENCE_CHUNK]
        inference = infer(model, chunk, outputs, head=getattr(model, "head", None), engine=engine)
        chunk_clusters, chunk_confidence = assign(getattr(inference, outputs[0]))
        clusters.append(chunk_clusters)
        confidences.append(chunk_confidence)
        release_pages(chunk)
        progress.update(len(chunk))
    progress.close()
    predicted = np.concatenate(clusters).astype(np.int64) if clusters else np.zeros(0, dtype=np.int64)
    confidence = np.concatenate(confidences).astype(np.float32) if confidences else np.zeros(0, dtype=np.float32)
    prediction = Prediction(predicted, images.ids(), method)
    metrics: dict = {
        "predicted_from": str(run.path), "method": method, "images": len(predicted),
        "data": str(data) if data is not None else (images.source or images.name), "image_size": config.image_size,
        "cluster_sizes": np.bincount(predicted, minlength=int(train_clusters.max()) + 1).tolist(),
    }  # fmt: skip
    if images.train_labels is not None:
        metrics["train_accuracy"] = accuracy_of(images.train_labels, predicted)
        metrics["train_scores"] = clustering_scores(images.train_labels, predicted)
    metrics["timings"] = {"total_seconds": time.perf_counter() - started}
    prediction.metrics = metrics
    if write:
        default_out = run.path.with_name(f"{run.path.name}-predict")
        target = RunDir.create_new(out if out is not None else default_out, "predict")
        target.write_prediction(prediction.ids, predicted)
        target.save_array("train_clusters", predicted)
        target.save_array("confidence", confidence)  # for the report: each cluster's most typical images first
        target.write_metrics(metrics)
        prediction.run_dir = target.path
    return prediction

