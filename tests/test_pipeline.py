import json

import numpy as np
import pytest
from conftest import tiny_config

from aeclust.cluster.stage import cluster_latents
from aeclust.config import ClusterConfig, RunConfig
from aeclust.errors import ConfigError
from aeclust.pipeline.run import run
from aeclust.presets import preset


def test_run_writes_every_output(small_set, tmp_path):
    result = run(tiny_config(epochs=2), tmp_path / "run", images=small_set)
    out = result.run_dir
    assert out == tmp_path / "run"
    lines = (out / "prediction.csv").read_text().splitlines()
    assert lines[0] == "id,label" and len(lines) == 241 and lines[1].startswith("0,")
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("val_accuracy", "train_mse", "val_mse", "train_accuracy"):
        assert key in metrics
    assert 0.5 <= metrics["val_accuracy"] <= 1
    assert (out / "history.csv").read_text().count("\n") == 3
    assert (out / "checkpoints" / "epoch_002.pt").exists()
    assert RunConfig.load(out / "config.json") == tiny_config(epochs=2)
    assert np.load(out / "arrays" / "val_embedding.npy").shape == (120, 2)


def test_the_last_history_step_is_not_computed_again(small_set, tmp_path, monkeypatch):
    import aeclust.encoders.autoencoder

    passes = []
    encode = aeclust.encoders.autoencoder.infer
    monkeypatch.setattr(aeclust.encoders.autoencoder, "infer", lambda model, images, *a, **kw: passes.append(len(images)) or encode(model, images, *a, **kw))
    result = run(tiny_config(epochs=2), tmp_path / "run", images=small_set)
    assert passes == [240, 120] * 2  # train and val after each epoch, nothing more at the end
    assert result.metrics["val_accuracy"] == result.history[-1].val_accuracy
    assert result.metrics["train_mse"] == result.history[-1].train_mse
    resumed = run(tiny_config(epochs=2), tmp_path / "run", images=small_set, resume=True)
    assert passes[4:] == [240, 120]  # a run resumed after its last epoch encodes once, and agrees
    assert resumed.metrics["val_accuracy"] == result.metrics["val_accuracy"]
    assert resumed.metrics["train_mse"] == pytest.approx(result.metrics["train_mse"], rel=1e-6)


def test_a_new_run_never_overwrites_an_old_one(small_set, tmp_path):
    first = run(tiny_config(epochs=1), tmp_path / "run", images=small_set)
    before = (first.run_dir / "prediction.csv").read_bytes()
    second = run(tiny_config(epochs=1, seed=1), tmp_path / "run", images=small_set)
    assert second.run_dir == tmp_path / "run-2"
    assert (first.run_dir / "prediction.csv").read_bytes() == before


def test_same_seed_same_clusters(small_set, tmp_path):
    a = run(tiny_config(epochs=1, seed=3), tmp_path / "a", images=small_set)
    b = run(tiny_config(epochs=1, seed=3), tmp_path / "b", images=small_set)
    assert (a.run_dir / "prediction.csv").read_bytes() == (b.run_dir / "prediction.csv").read_bytes()


def test_k_larger_than_the_data_is_refused(small_set, tmp_path):
    config = tiny_config(epochs=1)
    config.cluster.k = 1000
    with pytest.raises(ConfigError, match="k=1000 must be between 2 and the number of train images \\(240\\)"):
        run(config, tmp_path / "run", images=small_set)


def test_impossible_refinement_settings_are_refused_before_training(small_set, tmp_path):
    config = tiny_config(epochs=1)
    config.refine.self_label_epochs, config.refine.confident_share = 1, 1.5
    with pytest.raises(ConfigError, match="confident share=1.5: expected self-label epochs >= 0 and 0 < confident"):
        run(config, tmp_path / "run", images=small_set)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(view_size=20), "view_size=20: expected a positive multiple of 8"),
        (dict(view_size=24, rotate_views=True, small_views=1, rotation_size=0), "small_views=1: expected rotation predicted on a separately rotated"),
        (dict(view_size=24, contrastive=False), "view_size=24: expected contrastive views .* no contrastive views"),
        (dict(view_size=24, arch="baseline"), "view_size=24: expected contrastive views .* arch baseline"),
        (dict(small_views=2, small_view_size=12), "small_view_size=12: expected a positive multiple of 8"),
        (dict(small_views=2, small_crop_area=0.3), "small_crop_area=0.3: expected a share between 0 and min_crop_area"),
        (dict(small_views=1, view_size=0, contrastive=False), "small_views=1: expected contrastive views .* or small_views=0"),
        (dict(small_views=1, view_size=0, rotate_views=True, rotation_size=0), "small_views=1: expected rotation predicted on a separately"),
        (dict(rotation_size=20), "rotation_size=20: expected a positive multiple of 8"),
        (dict(rotation_size=24, rotate_views=True), "rotation_size=24: expected a separately rotated batch"),
        (dict(rotation_size=24, rotation=False), "rotation_size=24: expected a separately rotated batch"),
        (dict(rotation_size=24, view_size=0, arch="baseline"), "rotation_size=24: expected .* arch resnet"),
        (dict(reconstruction_share=0.0), "reconstruction_share=0.0: expected a share of each batch above 0"),
        (dict(reconstruction_share=1.5), "reconstruction_share=1.5: expected .* at most 1, or reconstruction_weight=0"),
    ],
)
def test_view_sizes_the_model_cannot_take_are_refused_before_training(small_set, tmp_path, settings, message):
    config = tiny_config(epochs=1)
    config.model = preset("contrastive").model
    for key, value in settings.items():
        setattr(config.model, key, value)
    with pytest.raises(ConfigError, match=message):
        run(config, tmp_path / "run", images=small_set)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "reducer, embedder, clusterer",
    [("none", "none", "kmeans"), ("pca", "umap", "gmm"), ("kpca", "sklearn-tsne", "agglomerative"), ("kpca", "tsne", "kmeans")],
)
def test_each_stage_can_be_swapped_by_name(reducer, embedder, clusterer):
    rng = np.random.default_rng(0)
    # Two well-separated blobs of 8-channel 2×2 "latents".
    latents = np.concatenate([rng.normal(0, 1, (60, 8, 2, 2)), rng.normal(6, 1, (60, 8, 2, 2))]).astype(np.float32)
    truth = np.repeat([0, 1], 60)
    config = ClusterConfig(reducer=reducer, components=5, embedder=embedder, clusterer=clusterer, perplexity=10)
    clustering = cluster_latents(latents, config, seed=0)
    assert clustering.clusters.shape == (120,)
    assert max(np.mean(clustering.clusters == truth), np.mean(clustering.clusters != truth)) == 1.0


def test_unknown_stage_names_are_refused():
    latents = np.zeros((10, 2, 1, 1), np.float32)
    with pytest.raises(ConfigError, match="unknown reducer 'ica'"):
        cluster_latents(latents, ClusterConfig(reducer="ica"))
    with pytest.raises(ConfigError, match="unknown clusterer 'dbscan'"):
        cluster_latents(latents, ClusterConfig(reducer="none", embedder="none", clusterer="dbscan"))


def test_kpca_above_the_exact_limit_uses_nystroem_and_agrees_with_exact(monkeypatch):
    import aeclust.cluster.reduce as reduce_module

    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (300, 6)), rng.normal(4, 1, (300, 6))]).astype(np.float32)
    config = ClusterConfig(reducer="kpca", components=5, kpca_gamma=0.05)
    exact = reduce_module.reduce(features, config, seed=0)
    monkeypatch.setattr(reduce_module, "EXACT_KPCA_MAX_POINTS", 100)
    monkeypatch.setattr(reduce_module, "NYSTROEM_LANDMARKS", 200)
    approximate = reduce_module.reduce(features, config, seed=0)
    assert approximate.shape == exact.shape == (600, 5)
    # The leading component separates the blobs in both, up to sign.
    correlation = np.corrcoef(exact[:, 0], approximate[:, 0])[0, 1]
    assert abs(correlation) > 0.99


@pytest.mark.parametrize("standardize, scaling", [(False, "none"), (True, "standardize")])
def test_configs_of_earlier_releases_still_load(tmp_path, standardize, scaling):
    values = tiny_config().to_dict()
    del values["cluster"]["scaling"]
    values["cluster"]["standardize"] = standardize
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert RunConfig.load(tmp_path / "config.json").cluster.scaling == scaling
