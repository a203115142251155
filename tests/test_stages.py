"""The stages as objects: an encoder, a clustering stage and a refiner, composed by a Pipeline; a new kind of encoder
is one class and one registry entry."""

from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

import aeclust.encoders.registry as registry
from aeclust.cluster.stage import ClusteringStage
from aeclust.config import ClusterConfig, RefineConfig
from aeclust.data import ImageSet
from aeclust.encoders.autoencoder import AutoencoderEncoder
from aeclust.encoders.base import Encoder
from aeclust.metrics import accuracy_of
from aeclust.pipeline.pipeline import Pipeline
from aeclust.refine.head import FeatureRefiner


class MeanColourEncoder(Encoder):
    """A kind of encoder the package does not have: each image's mean colour in each quarter (12 numbers)."""

    kind = "mean-colour"

    def fit(self, images: ImageSet) -> "MeanColourEncoder":
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        side = images.shape[1] // 2
        quarters = [images[:, r : r + side, c : c + side] for r in (0, side) for c in (0, side)]
        return np.concatenate([q.reshape(len(images), -1, 3).mean(axis=1) for q in quarters], axis=1) / 255.0

    def save(self, directory: Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> "MeanColourEncoder":
        return cls()


def clustering(**changes) -> ClusteringStage:
    settings = ClusterConfig(k=2, latent="pool", scaling="l2", reducer="none", embedder="none", clusterer="kmeans")
    for name, value in changes.items():
        setattr(settings, name, value)
    return ClusteringStage(settings, seed=0)


def test_an_encoder_kind_is_one_class_and_one_registry_entry(small_set, tmp_path, monkeypatch):
    monkeypatch.setitem(registry.ENCODERS, MeanColourEncoder.kind, MeanColourEncoder)
    heard = []
    refiner = FeatureRefiner(RefineConfig(epochs=3, neighbours=5, batch_size=32), seed=0)  # k: the clustering's
    pipeline = Pipeline(MeanColourEncoder(), clustering(scaling="standardize"), refiner,
                        callbacks=[lambda stage, made: heard.append(stage)])  # fmt: skip
    labels = pipeline.fit_predict(small_set)
    assert heard == ["encode", "cluster", "refine"]
    assert labels.shape == (len(small_set.train_images),) and set(labels.tolist()) == {0, 1}
    np.testing.assert_array_equal(pipeline.predict(small_set.train_images), labels)
    assert pipeline.transform(small_set.val_images).shape == (len(small_set.val_images), 12)
    pipeline.save(tmp_path / "saved")
    loaded = Pipeline.load(tmp_path / "saved")
    assert isinstance(loaded.encoder, MeanColourEncoder) and loaded.refiner is not None
    np.testing.assert_array_equal(loaded.predict(small_set.val_images), pipeline.predict(small_set.val_images))


def test_aeclusts_own_autoencoder_is_an_encoder_like_any_other(small_set, tmp_path):
    config = tiny_config(epochs=1)
    encoder = AutoencoderEncoder(config.model, config.train, directory=tmp_path / "training", seed=0)
    pipeline = Pipeline(encoder, clustering(k=config.cluster.k)).fit(small_set)
    assert encoder.transform(small_set.val_images).ndim == 4  # latents, pooled by the clustering stage
    assert (tmp_path / "training" / "checkpoints" / "epoch_001.pt").is_file()
    assert accuracy_of(small_set.train_labels, pipeline.labels_) >= 0.5
    np.testing.assert_array_equal(pipeline.predict(small_set.train_images), pipeline.labels_)
    pipeline.save(tmp_path / "saved")
    loaded = Pipeline.load(tmp_path / "saved")
    assert loaded.refiner is None
    np.testing.assert_array_equal(loaded.predict(small_set.val_images), pipeline.predict(small_set.val_images))


def test_a_stage_of_the_wrong_kind_is_refused_by_name():
    with pytest.raises(TypeError, match="encoder: expected an aeclust Encoder .*, found str"):
        Pipeline("dinov2", clustering())
    with pytest.raises(TypeError, match="refiner: expected an aeclust FeatureRefiner or None, found int"):
        Pipeline(MeanColourEncoder(), clustering(), 3)
