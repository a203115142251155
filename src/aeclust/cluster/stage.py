"""The clustering stage: latents → features → reducer → embedder → (k chosen) → clusterer, fitted once and kept.

:class:`ClusteringStage` has scikit-learn's shape: :meth:`~ClusteringStage.fit` clusters the latents it is given,
:meth:`~ClusteringStage.predict` places others in those clusters, and :meth:`~ClusteringStage.save` /
:meth:`~ClusteringStage.load` keep what placing needs as plain arrays (a run's ``centres.npz``). New points are
placed in the feature space the stage started from (scaled with the fitted images' statistics): t-SNE and UMAP have
no faithful way to place new points, and the 2-D embedding is only a view. A clusterer that keeps a space of its own
(whitened-kmeans's whitenings) places them there, as it placed the points it was fitted to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aeclust.cluster.choose_k import KSelection, choose_k
from aeclust.cluster.clusterers import (
    AutoClusterer,
    Clusterer,
    ClustererChoice,
    NearestCentres,
    create_clusterer,
)
from aeclust.cluster.features import LatentFeatures
from aeclust.cluster.reduce import embed_2d, reduce
from aeclust.config import AUTO_K, ClusterConfig
from aeclust.errors import RunDirError
from aeclust.runtime.io import atomic_open


@dataclass
class Clustering:
    """What the clustering stage produced for one set of latents."""

    features: np.ndarray  # after the reducer
    embedding: np.ndarray  # 2-D (or the reducer's output when the embedder is "none")
    clusters: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: reduce, embed, choose_k, cluster
    k_selection: KSelection | None = None  # how k was chosen, when the configuration left it to the data
    clusterer_choice: ClustererChoice | None = None  # which clusterer the "auto" clusterer took, and why

    @property
    def clusterer(self) -> str | None:
        """The clusterer whose clusters these are, when the "auto" clusterer chose one."""
        return None if self.clusterer_choice is None else self.clusterer_choice.chosen


class ClusteringStage:
    """Latents → clusters as ``settings`` (a run's ``cluster`` section) say; ``seed`` makes every draw repeatable.

    After :meth:`fit`: ``labels_``, ``clustering_`` (the features, embedding, timings and choices), ``k_`` and
    ``placer_``, the fitted clusterer by which :meth:`predict` places other latents.
    """

    def __init__(self, settings: ClusterConfig, *, seed: int = 0) -> None:
        self.settings, self.seed = settings, seed

    def fit(self, latents: np.ndarray) -> ClusteringStage:
        """Cluster ``latents`` (N×C×h×w latents, or N×D features). With ``settings.k`` = :data:`AUTO_K`, k is first
        chosen on the points the clusterer sees (``k_criterion`` over ``k_min..k_max``)."""
        settings, seed = self.settings, self.seed
        seconds: dict[str, float] = {}
        features, reduced, embedding = self.embed(latents, seconds)
        embedded_at = time.perf_counter()
        selection = None
        if settings.k == AUTO_K:
            selection = choose_k(embedding, settings.k_min, settings.k_max, settings.k_criterion, seed)
        chosen_at = time.perf_counter()
        self.k_ = settings.k if selection is None else selection.chosen
        self.clusterer_ = create_clusterer(settings.clusterer, self.k_, seed).fit(embedding)
        if selection is not None:
            seconds["choose_k"] = chosen_at - embedded_at
        seconds["cluster"] = time.perf_counter() - chosen_at
        self.labels_ = self.clusterer_.labels_
        choice = self.clusterer_.choice_ if isinstance(self.clusterer_, AutoClusterer) else None
        self.clustering_ = Clustering(reduced, embedding, self.labels_, seconds, selection, choice)
        self.places_others_ = self.clusterer_.places_others
        self.placer_ = (
            self.clusterer_ if self.cuts_the_features else NearestCentres(self.k_).fit_centres(features, self.labels_)
        )
        return self

    def embed(
        self, latents: np.ndarray, seconds: dict[str, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stage before its cut: ``latents``' features (scaled by their own statistics, which :attr:`features_`
        keeps), those after the reducer, and their embedding; the time each took in ``seconds`` ("reduce", "embed")."""
        started = time.perf_counter()
        self.features_ = LatentFeatures(self.settings.latent, self.settings.scaling)
        features = self.features_.fit_transform(latents)
        reduced = reduce(features, self.settings, self.seed)
        reduced_at = time.perf_counter()
        embedding = embed_2d(reduced, self.settings, self.seed)
        if seconds is not None:
            seconds.update(reduce=reduced_at - started, embed=time.perf_counter() - reduced_at)
        return features, reduced, embedding

    @property
    def cuts_the_features(self) -> bool:
        """Whether the clusterer cuts the features as they are. Then it places new points itself; after a reducer or an
        embedder, which cannot place new points faithfully, the centres of its clusters in the features place them."""
        return self.settings.reducer == "none" and self.settings.embedder == "none"

    @property
    def places_others(self) -> bool:
        """Whether other images (a run's val images) are better placed in this clustering than cut on their own."""
        return self.places_others_

    def fit_placer(self, latents: np.ndarray, labels: np.ndarray) -> ClusteringStage:
        """Fit only what places new latents, to ``labels`` of ``latents`` that a run clustered before it saved its
        centres: whitened-kmeans's cuts made again as the run made them (the same seed), other clusterers' centres."""
        settings = self.settings
        self.features_ = LatentFeatures(settings.latent, settings.scaling)
        features = self.features_.fit_transform(latents)
        self.k_ = int(labels.max()) + 1
        self.labels_ = labels
        placer = create_clusterer(settings.clusterer, self.k_, self.seed)
        self.places_others_ = placer.places_others
        if self.cuts_the_features and placer.places_others:
            placer.cut(features)
        else:
            placer = NearestCentres(self.k_)
        self.placer_ = placer.fit_centres(features, labels)
        return self

    def place(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each image's cluster and how typical of it the image is (higher: more)."""
        return self.placer_.place(self.features_.transform(latents))

    def predict(self, latents: np.ndarray) -> np.ndarray:
        return self.place(latents)[0]

    def save(self, path: Path) -> None:
        """Write what :meth:`predict` needs as a .npz of plain arrays, atomically."""
        with atomic_open(path, "wb") as handle:
            np.savez(handle, **self.features_.state(), **self.placer_.state())

    @classmethod
    def load(cls, path: Path) -> ClusteringStage:
        """A stage :meth:`save` wrote, able to :meth:`predict`; or a :class:`RunDirError` line naming the file."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
            features = LatentFeatures.from_state(arrays)
            placer = Clusterer.from_state(arrays)
        except (OSError, ValueError, KeyError) as error:  # missing, damaged, or not one a stage saved
            raise RunDirError(f"{path}: expected a run's cluster centres, could not read them ({error})") from None
        stage = cls(ClusterConfig(latent=features.mode, scaling=features.scaling, k=placer.n_clusters))
        stage.features_, stage.placer_, stage.k_ = features, placer, placer.n_clusters
        stage.places_others_ = placer.places_others
        return stage


def embedded_latents(
    latents: np.ndarray, config: ClusterConfig, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The clustering stage before its cut: the latents' features after the reducer, and their embedding."""
    _, reduced, embedding = ClusteringStage(config, seed=seed).embed(latents)
    return reduced, embedding


def cluster_latents(latents: np.ndarray, config: ClusterConfig, seed: int = 0) -> Clustering:
    """The whole clustering stage on ``latents`` (:meth:`ClusteringStage.fit`), as one record."""
    return ClusteringStage(config, seed=seed).fit(latents).clustering_
