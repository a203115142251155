"""Stages composed: an encoder, a clustering stage and (optionally) a refiner on the encoder's fixed features.

The shape scikit-learn's ``Pipeline`` gives fitted steps: each stage is made with its own settings and fitted in turn,
arrays pass between them, and what crosses stages (progress, timings) goes to callbacks, never from one stage into
another. A new kind of encoder plugs in here unchanged (:mod:`aeclust.encoders.registry`). A run of aeclust's own
autoencoder adds to this what only training needs (its history, budget and image refinement: :mod:`.run`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from aeclust.cluster.stage import ClusteringStage
from aeclust.data import ImageSet
from aeclust.encoders.base import Encoder
from aeclust.encoders.registry import encoder_kind
from aeclust.errors import RunDirError
from aeclust.refine.head import FeatureRefiner
from aeclust.runtime.io import write_text_atomic

# Called after each stage with its name ("encode", "cluster", "refine") and what it took and made.
StageCallback = Callable[[str, dict], None]
_MANIFEST, _ENCODER, _CLUSTERING, _HEAD = "pipeline.json", "encoder", "centres.npz", "head.npz"


def _expect(value: object, kind: type, role: str, what: str) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{role}: expected {what}, found {type(value).__name__}")


class Pipeline:
    """``encoder`` → ``clusterer`` (a :class:`ClusteringStage`) → ``refiner`` (a :class:`FeatureRefiner`, or None).

    :meth:`fit` fits the encoder on the train images and encodes them, clusters their features, and refines the
    clusters on the same fixed features; ``labels_`` then holds each train image's cluster and ``features_`` the
    clustering features. :meth:`predict` places other images: by the refiner's head where there is one, else by the
    clustering stage. ``callbacks`` hear of each stage as it ends. A refiner made without ``k`` refines as many
    clusters as the clustering stage found (``--k auto`` chooses them from the data).
    """

    def __init__(
        self,
        encoder: Encoder,
        clusterer: ClusteringStage,
        refiner: FeatureRefiner | None = None,
        *,
        callbacks: Sequence[StageCallback] = (),
    ) -> None:
        _expect(encoder, Encoder, "encoder", "an aeclust Encoder (fit / transform / save / load)")
        _expect(clusterer, ClusteringStage, "clusterer", "an aeclust ClusteringStage")
        if refiner is not None:
            _expect(refiner, FeatureRefiner, "refiner", "an aeclust FeatureRefiner or None")
        self.encoder, self.clusterer, self.refiner, self.callbacks = encoder, clusterer, refiner, list(callbacks)

    def _ended(self, stage: str, started: float, **made: object) -> None:
        for callback in self.callbacks:
            callback(stage, {"seconds": time.perf_counter() - started, **made})

    def fit(self, images: ImageSet) -> Pipeline:
        started = time.perf_counter()
        encoded = self.encoder.fit(images).transform(images.train_images)
        self._ended("encode", started, shape=encoded.shape)
        started = time.perf_counter()
        self.clusterer.fit(encoded)
        self.features_ = self.clusterer.features_.transform(encoded)
        self.labels_ = self.clusterer.labels_
        self._ended("cluster", started, k=self.clusterer.k_)
        if self.refiner is not None:
            started = time.perf_counter()
            self.labels_ = self.refiner.fit(self.features_, self.clusterer.labels_).labels_
            self._ended("refine", started, k=self.refiner.n_clusters_)
        return self

    def fit_predict(self, images: ImageSet) -> np.ndarray:
        return self.fit(images).labels_

    def transform(self, images: np.ndarray) -> np.ndarray:
        """The clustering features of ``images`` (N×H×W×3 uint8)."""
        return self.clusterer.features_.transform(self.encoder.transform(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        encoded = self.encoder.transform(images)
        if self.refiner is not None:
            return self.refiner.predict(self.clusterer.features_.transform(encoded))
        return self.clusterer.predict(encoded)

    def save(self, directory: Path) -> None:
        """Each fitted stage in ``directory`` (made if need be), beside a manifest naming the encoder's kind."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save(directory / _ENCODER)
        self.clusterer.save(directory / _CLUSTERING)
        if self.refiner is not None:
            self.refiner.save(directory / _HEAD)
        manifest = {"encoder": self.encoder.kind, "refined": self.refiner is not None}
        write_text_atomic(directory / _MANIFEST, json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> Pipeline:
        """A fitted pipeline as :meth:`save` wrote it, able to :meth:`predict`."""
        directory = Path(directory)
        try:
            manifest = json.loads((directory / _MANIFEST).read_text())
            kind = manifest["encoder"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RunDirError(
                f"{directory / _MANIFEST}: expected a saved aeclust pipeline, could not read it ({error})"
            ) from None
        encoder = encoder_kind(kind).load(directory / _ENCODER, device)
        refiner = FeatureRefiner.load(directory / _HEAD) if manifest.get("refined") else None
        pipeline = cls(encoder, ClusteringStage.load(directory / _CLUSTERING), refiner)
        return pipeline
