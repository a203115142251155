"""`aeclust predict`: new images assigned to a finished run's clusters."""

import csv

import numpy as np
import pytest
from conftest import tiny_config

import aeclust.cluster.clusterers
from aeclust.cli import main
from aeclust.cluster.stage import ClusteringStage
from aeclust.data import ImageSet
from aeclust.errors import RunDirError
from aeclust.metrics import accuracy_of
from aeclust.pipeline.predict import predict
from aeclust.pipeline.run import placed_by_train_cuts, run
from aeclust.pipeline.rundir import RunDir
from aeclust.presets import preset


def labels_in(path) -> list[int]:
    with open(path, newline="") as handle:
        return [int(row["label"]) for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def refined_run(small_set, tmp_path_factory):
    config = tiny_config(epochs=1)
    config.cluster = preset("contrastive").cluster
    config.refine.epochs, config.refine.neighbours = 1, 5
    return run(config, tmp_path_factory.mktemp("predict") / "refined", images=small_set)


@pytest.fixture(scope="module")
def plain_run(small_set, tmp_path_factory):
    config = tiny_config(epochs=1)
    config.cluster = preset("contrastive").cluster  # pooled unit latents, k-means, no refinement
    return run(config, tmp_path_factory.mktemp("predict") / "plain", images=small_set)


def test_a_refined_run_predicts_its_own_images_as_it_labelled_them(refined_run, small_hw9_dir, tmp_path):
    prediction = predict(refined_run.run_dir, small_hw9_dir, tmp_path / "p")
    assert prediction.method == "refined head"
    np.testing.assert_array_equal(prediction.clusters, refined_run.train_clusters)
    assert labels_in(tmp_path / "p" / "prediction.csv") == labels_in(refined_run.run_dir / "prediction.csv")
    assert prediction.metrics["train_accuracy"] == pytest.approx(refined_run.metrics["train_accuracy"])


def test_without_refinement_images_go_to_the_nearest_centre_of_the_runs_clusters(plain_run, small_set):
    prediction = predict(plain_run.run_dir, images=small_set, write=False)
    assert prediction.method == "nearest centre"
    # k-means' own labels are its nearest centres, up to its last iteration's moves
    assert np.mean(prediction.clusters == plain_run.train_clusters) >= 0.98


def test_a_run_cut_by_whitened_kmeans_places_new_images_as_its_whitened_cuts_did(small_set, tmp_path):
    config = tiny_config(epochs=1)
    config.cluster = preset("contrastive").cluster
    config.cluster.clusterer = "whitened-kmeans"
    whitened = run(config, tmp_path / "whitened", images=small_set)
    prediction = predict(whitened.run_dir, images=small_set, write=False)
    assert prediction.method == "nearest centre"
    assert np.mean(prediction.clusters == whitened.train_clusters) >= 0.98
    # its val images were placed so too, not cut on their own
    val = predict(whitened.run_dir, images=ImageSet(name="val", train_images=small_set.val_images), write=False)
    np.testing.assert_array_equal(RunDir(whitened.run_dir).load_array("val_clusters"), val.clusters)
    assert whitened.metrics["val_accuracy"] == pytest.approx(accuracy_of(small_set.val_labels, val.clusters))


def test_a_run_without_a_refined_head_saves_its_centres_and_predict_needs_no_latents(small_set, tmp_path):
    config = tiny_config(epochs=1)
    config.cluster = preset("contrastive").cluster
    config.cluster.clusterer = "whitened-kmeans"
    finished = run(config, tmp_path / "whitened", images=small_set)
    directory = RunDir(finished.run_dir)
    assert directory.centres.is_file()
    saved = ClusteringStage.load(directory.centres)
    assert len(saved.placer_.spaces_) == 3 and saved.places_others  # one whitening per cut
    before = predict(finished.run_dir, images=small_set, write=False).clusters
    directory.array("train_latents").unlink()  # neither read nor fitted again: the saved centres place them
    np.testing.assert_array_equal(predict(finished.run_dir, images=small_set, write=False).clusters, before)
    directory.centres.write_bytes(b"not an archive")
    with pytest.raises(RunDirError, match=f"{directory.centres}: expected a run's cluster centres"):
        predict(finished.run_dir, images=small_set, write=False)


def test_a_run_from_before_runs_saved_centres_is_placed_by_its_latents(plain_run, small_set):
    directory = RunDir(plain_run.run_dir)
    saved = predict(plain_run.run_dir, images=small_set, write=False).clusters
    kept = directory.centres.read_bytes()
    directory.centres.unlink()
    try:
        np.testing.assert_array_equal(predict(plain_run.run_dir, images=small_set, write=False).clusters, saved)
    finally:
        directory.centres.write_bytes(kept)


def test_val_is_placed_by_the_whitenings_the_train_clustering_fitted_not_by_fitting_them_again(monkeypatch):
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 150)
    train_latents = (rng.normal(size=(300, 12, 2, 2)) + 3.0 * groups[:, None, None, None]).astype(np.float32)
    val_latents = (rng.normal(size=(60, 12, 2, 2)) + 3.0 * groups[::5, None, None, None]).astype(np.float32)
    config = tiny_config(epochs=1)
    config.cluster = preset("contrastive").cluster
    config.cluster.clusterer = "whitened-kmeans"
    train = ClusteringStage(config.cluster, seed=config.seed).fit(train_latents)
    assert train.places_others
    refitted = ClusteringStage(config.cluster, seed=config.seed).fit_placer(train_latents, train.labels_)
    refitted = placed_by_train_cuts(val_latents, refitted, config)

    def fitted_again(*args):
        raise AssertionError("the whitenings were fitted again")

    monkeypatch.setattr(aeclust.cluster.clusterers, "whitened_cuts", fitted_again)
    kept = placed_by_train_cuts(val_latents, train, config)
    np.testing.assert_array_equal(kept.clusters, refitted.clusters)  # the same seed fitted the same cuts
    assert set(kept.clusters) == {0, 1}


def test_a_study_run_assigns_new_images_to_its_clusters(small_set, embedded, tmp_path):
    config = tiny_config(epochs=1)  # PCA, then t-SNE: new images are placed by the latents' cluster centres
    finished = run(config, tmp_path / "study", images=small_set)
    new = embedded.val_images[200:260]
    prediction = predict(finished.run_dir, images=ImageSet(name="new", train_images=new), write=False)
    assert len(prediction.clusters) == 60 and set(prediction.clusters) <= set(range(config.cluster.k))


def test_the_cli_writes_a_new_directory_each_time(refined_run, small_hw9_dir, tmp_path, capsys):
    out = tmp_path / "mine"
    for _ in range(2):
        assert main(["predict", str(refined_run.run_dir), "--data", str(small_hw9_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "mine-2"]
    assert len(labels_in(out / "prediction.csv")) == 240
    assert "refined head" in capsys.readouterr().out


def test_a_directory_that_is_not_a_finished_run_is_one_line(tmp_path, small_hw9_dir, capsys):
    (tmp_path / "half").mkdir()
    assert main(["predict", str(tmp_path / "half"), "--data", str(small_hw9_dir)]) == 2
    assert capsys.readouterr().err.strip().startswith(f"aeclust: error: {tmp_path / 'half'}: expected a finished")


@pytest.mark.parametrize("which", ["refined", "plain"])
def test_a_predict_directory_is_reported_with_its_clusters_and_a_browser_of_every_image(
    which, refined_run, plain_run, small_hw9_dir, tmp_path, capsys
):
    import json
    import re

    source = refined_run if which == "refined" else plain_run
    predicted = tmp_path / "predicted"
    assert main(["predict", str(source.run_dir), "--data", str(small_hw9_dir), "--out", str(predicted)]) == 0
    assert main(["report", str(predicted), "--out", str(tmp_path / "report")]) == 0
    metrics = json.loads((predicted / "metrics.json").read_text())
    page = (tmp_path / "report" / "index.html").read_text()
    assert f"accuracy {metrics['train_scores']['accuracy']:.3f}" in page and "confusion.png" in page
    assert (tmp_path / "report" / "confusion.png").stat().st_size > 1000
    confidence = np.load(predicted / "arrays" / "confidence.npy")
    clusters = np.load(predicted / "arrays" / "train_clusters.npy")
    ids = [row.split(",")[0] for row in (predicted / "prediction.csv").read_text().splitlines()[1:]]
    browser = tmp_path / "report" / "browser"
    shown = {}
    for cluster, size in enumerate(metrics["cluster_sizes"]):
        pages = sorted(browser.glob(f"cluster-{cluster}-*.html"), key=lambda path: int(path.stem.rsplit("-", 1)[1]))
        on_pages = [re.findall(r'data-id="([^"]+)"', path.read_text()) for path in pages]
        members = [image_id for page_ids in on_pages for image_id in page_ids]
        assert len(members) == size
        expected = np.flatnonzero(clusters == cluster)
        expected = expected[np.argsort(-confidence[expected], kind="stable")]  # the surest (or nearest) first
        assert members == [ids[i] for i in expected]
        shown.update(dict.fromkeys(members))
    assert len(shown) == 240  # every image, once
    order_note = "surest of first" if which == "refined" else "closest to the cluster's centre first"
    assert order_note in (browser / "index.html").read_text()


def test_a_predict_directory_beside_runs_is_one_line(refined_run, small_hw9_dir, tmp_path, capsys):
    predicted = tmp_path / "predicted"
    assert main(["predict", str(refined_run.run_dir), "--data", str(small_hw9_dir), "--out", str(predicted)]) == 0
    capsys.readouterr()
    assert main(["report", str(refined_run.run_dir), str(predicted), "--out", str(tmp_path / "report")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("aeclust: error: report:") and "reported on its own" in error
    assert not (tmp_path / "report").exists()
