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
from sklearn.decomposition import PCA

from aeclust.cluster import WHITENED_KMEANS, WhitenedCuts, align_to, whitened_cuts, whitened_vote
from aeclust.config import RunConfig
from aeclust.data import ImageSet, load_images
from aeclust.data.store import release_pages
from aeclust.embed import LATENT_MODES, SCALINGS, latent_features
from aeclust.engine import Engine, resolve_device
from aeclust.errors import ConfigError, RunDirError
from aeclust.infer import infer
from aeclust.io import atomic_open
from aeclust.metrics import accuracy_of, clustering_scores
from aeclust.progress import Progress
from aeclust.refine import REFINE_KIND, ClusterModel
from aeclust.rundir import PREDICT_NEEDS, RunDir, load_checked
from aeclust.train import load_model, log, set_threads

INFERENCE_CHUNK = 4000  # images encoded, then assigned, at a time: whole inference batches, as the run encoded them


@dataclass
class Prediction:
    """Clusters of new images; ``method`` says how they were assigned."""

    clusters: np.ndarray
    ids: list[str]
    method: str  # "refined head" or "nearest centre"
    run_dir: Path | None = None  # where it was written, when it was
    metrics: dict | None = None


@dataclass
class Whitening:
    """A fitted whitening (a scikit-learn PCA with ``whiten=True``) as two arrays, so that a run can save it without
    pickling: points are placed at (x − offset) · projection."""

    offset: np.ndarray  # the fitted points' mean
    projection: np.ndarray  # features × components: the components, each divided by its standard deviation

    @classmethod
    def of(cls, fitted: PCA) -> Whitening:
        return cls(fitted.mean_, fitted.components_.T / np.sqrt(fitted.explained_variance_))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return (features - self.offset) @ self.projection


class CentreAssigner:
    """The nearest of a run's cluster centres, in the feature space its clustering stage started from.

    Fitted to the run's train latents and clusters (:meth:`fitted`); saved in the run directory (:meth:`save`) so
    that ``aeclust predict`` places new images without reading those latents again (8 GB at a million images) or,
    for whitened-kmeans, fitting the whitenings and cuts again.
    """

    def __init__(
        self, mode: str, scaling: str, mean: np.ndarray, std: np.ndarray,
        spaces: list[Whitening | None], centres: list[np.ndarray],
    ) -> None:  # fmt: skip
        """``spaces``: each space the run cut in (None: the features as they are), with its ``centres`` (k × its
        dimensions); ``mean`` and ``std``: the train images' raw features', for ``scaling`` "standardize"."""
        self.mode, self.scaling, self.mean, self.std = mode, scaling, mean, std
        self.spaces, self.centres = spaces, centres
        self.k = len(centres[0])

    @classmethod
    def fitted(
        cls,
        train_latents: np.ndarray,
        train_clusters: np.ndarray,
        config: RunConfig,
        whitened: WhitenedCuts | None = None,
    ) -> CentreAssigner:
        """The centres of ``train_clusters`` in the features of ``train_latents``, as ``config`` makes them.
        ``whitened``: a whitened-kmeans run's whitenings and cuts, as its clustering stage kept them
        (:attr:`aeclust.cluster.Clustering.whitened`); without them they are fitted again as the run fitted them."""
        cluster = config.cluster
        mode, scaling = cluster.latent, cluster.scaling
        check_modes(mode, scaling)
        raw = latent_features(train_latents, mode, "none")
        mean, std = raw.mean(axis=0), raw.std(axis=0) + 1e-6  # the train images' own, as the run used
        features = scaled(raw, scaling, mean, std)
        k = int(train_clusters.max()) + 1
        spaces: list[Whitening | None] = [None]
        cuts = [train_clusters]
        if cluster.clusterer == WHITENED_KMEANS and cluster.reducer == "none" and cluster.embedder == "none":
            # Each cut made again as the run made it (the same seed), so that each space has its own cut's centres
            # and the train images are placed as they were, not by the vote's centres in spaces it was not cut in.
            whitened = whitened if whitened is not None else whitened_cuts(features, k, config.seed)
            spaces = [Whitening.of(space) for space in whitened.spaces]
            cuts = [align_to(train_clusters, cut, k) for cut in whitened.cuts]
        centres = [centres_of(placed(features, space), cut, k) for space, cut in zip(spaces, cuts)]
        return cls(mode, scaling, mean, std, spaces, centres)

    def save(self, path: Path) -> None:
        """Write the assigner as a .npz of plain arrays, atomically."""
        arrays = {"mode": np.array(self.mode), "scaling": np.array(self.scaling), "mean": self.mean, "std": self.std}
        for index, (space, centres) in enumerate(zip(self.spaces, self.centres)):
            arrays[f"centres_{index}"] = centres
            if space is not None:
                arrays |= {f"offset_{index}": space.offset, f"projection_{index}": space.projection}
        with atomic_open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> CentreAssigner:
        """An assigner :meth:`save` wrote, or a :class:`RunDirError` line naming the file."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
            spaces, centres, index = [], [], 0
            while f"centres_{index}" in arrays:
                centres.append(arrays[f"centres_{index}"])
                whitened = f"offset_{index}" in arrays
                spaces.append(Whitening(arrays[f"offset_{index}"], arrays[f"projection_{index}"]) if whitened else None)
                index += 1
            mode, scaling, mean, std = (arrays[name] for name in ("mode", "scaling", "mean", "std"))
            if not centres:
                raise KeyError("centres_0")
        except (OSError, ValueError, KeyError) as error:  # missing, damaged, or not one an assigner saved
            raise RunDirError(f"{path}: expected a run's cluster centres, could not read them ({error})") from None
        check_modes(str(mode), str(scaling))  # a file from a later aeclust may name modes this one lacks
        return cls(str(mode), str(scaling), mean, std, spaces, centres)

    def __call__(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each image's nearest centre, and how typical of it the image is (higher: more): minus the distance, or for
        whitened-kmeans the share of cuts that agree, ties broken by the distance in the middle cut's space."""
        features = scaled(latent_features(latents, self.mode, "none"), self.scaling, self.mean, self.std)
        nearest_in, closeness_in = [], []
        for space, centres in zip(self.spaces, self.centres):
            points = placed(features, space)
            distances = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
            nearest = distances.argmin(axis=1)
            nearest_in.append(nearest)
            closeness_in.append(-np.sqrt(distances[np.arange(len(nearest)), nearest]))
        if len(nearest_in) == 1:
            return nearest_in[0], closeness_in[0]
        chosen = whitened_vote(nearest_in, self.k)  # typical where the cuts agree
        agreeing = np.mean([nearest == chosen for nearest in nearest_in], axis=0)
        return chosen, agreeing + 1e-3 * closeness_in[1]


def check_modes(mode: str, scaling: str) -> None:
    if mode not in LATENT_MODES or scaling not in SCALINGS:
        raise ConfigError(f"latent mode {mode!r} or scaling {scaling!r} unknown to this aeclust")


def scaled(raw: np.ndarray, scaling: str, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Raw latent features scaled as the run's clustering stage scaled its train images'."""
    if scaling == "standardize":
        return (raw - mean) / std
    if scaling == "l2":
        return raw / (np.linalg.norm(raw, axis=1, keepdims=True) + 1e-12)
    return raw


def placed(features: np.ndarray, space: Whitening | None) -> np.ndarray:
    return features if space is None else space(features)


def centres_of(points: np.ndarray, clusters: np.ndarray, k: int) -> np.ndarray:
    # A cluster left empty by its clusterer gets a centre at infinity: no image is ever nearest to it.
    nowhere = np.full(points.shape[1], np.inf)
    return np.stack(
        [points[clusters == c].mean(axis=0) if (clusters == c).any() else nowhere for c in range(k)]
    ).astype(np.float32)


def most_probable(probabilities: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each image's most probable cluster under the refined head, and that probability."""
    confidence, clusters = probabilities.max(1)
    return clusters.numpy(), confidence.numpy()


def refined_model(run: RunDir, config: RunConfig, engine: Engine) -> ClusterModel | None:
    """The run's refined encoder and cluster head, when its refinement finished; else None."""
    if not run.refine_checkpoint.is_file():
        return None
    state = load_checked(run.refine_checkpoint, REFINE_KIND, "an aeclust refinement checkpoint")
    if state["epoch"] < config.refine.total_epochs:
        return None  # stopped mid-refinement: its clusters are the clustering stage's, not this head's
    model, _ = load_model(run.last_checkpoint)
    head = torch.nn.Linear(state["head"]["weight"].shape[1], state["head"]["weight"].shape[0])
    refined = ClusterModel(model, head)
    refined.autoencoder.load_state_dict(state["model"])
    head.load_state_dict(state["head"])
    return refined.to(engine.device).eval()


def centre_assigner(run: RunDir, config: RunConfig, train_clusters: np.ndarray) -> CentreAssigner:
    """The run's saved centres; a run from before runs saved them, its centres fitted again to its train latents."""
    if run.centres.is_file():
        return CentreAssigner.load(run.centres)
    if not run.array("train_latents").is_file():
        raise RunDirError(f"{run.path}: expected arrays/train_latents.npy to place new images by, found none")
    return CentreAssigner.fitted(run.load_array("train_latents", mmap=True), train_clusters, config)


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
            model, _ = load_model(run.last_checkpoint, engine.device)
            assign = centre_assigner(run, config, train_clusters)
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

