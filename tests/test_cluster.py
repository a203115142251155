"""The clusterers on points whose groups are known."""

import numpy as np
import pytest

from aeclust.cluster.clusterers import (
    CLUSTERERS,
    MERGE_MARGIN,
    TWO_CLUSTERS_REASON,
    Clusterer,
    align_to,
    choose_clusterer,
    cluster,
    create_clusterer,
    vote,
    whitened_cuts,
)  # fmt: skip
from aeclust.cluster.features import LatentFeatures
from aeclust.cluster.stage import ClusteringStage
from aeclust.config import ClusterConfig
from aeclust.errors import ConfigError
from aeclust.metrics import clustering_scores
from aeclust.refine.scan import resolve_balance


def uneven_groups(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A wide disc of 700 points with two tight blobs of 200 and 100 just outside its rim (70 / 20 / 10 %)."""
    rng = np.random.default_rng(seed)
    radius, angle = 10 * np.sqrt(rng.random(700)), 2 * np.pi * rng.random(700)
    disc = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
    points = np.r_[disc, rng.normal([14, 0], 0.7, (200, 2)), rng.normal([0, 14], 0.7, (100, 2))]
    return points, np.repeat([0, 1, 2], [700, 200, 100])


def test_kmeans_cuts_a_wide_group_where_kmeans_merge_keeps_uneven_groups_whole():
    points, labels = uneven_groups()
    cut = cluster(points, 3, "kmeans", seed=0)
    assert clustering_scores(labels, cut)["accuracy"] < 0.75  # k-means evens out the sizes
    assert sorted(np.bincount(cut))[-1] < 500
    merged = cluster(points, 3, "kmeans-merge", seed=0)
    assert clustering_scores(labels, merged)["accuracy"] == 1.0
    assert sorted(np.bincount(merged), reverse=True) == [700, 200, 100]


@pytest.mark.parametrize("method", sorted(CLUSTERERS))
def test_every_clusterer_numbers_its_clusters_from_zero_and_repeats_itself(method):
    points, _ = uneven_groups(seed=1)
    first = cluster(points, 3, method, seed=0)
    assert first.dtype == np.int64 and set(first.tolist()) == {0, 1, 2}
    assert np.array_equal(first, cluster(points, 3, method, seed=0))


def test_kmeans_merge_falls_back_to_kmeans_when_there_are_too_few_points_to_over_cluster():
    points, _ = uneven_groups()
    few = points[::170]  # 6 points: at most 3 pieces, no more than k = 3
    assert np.array_equal(cluster(few, 3, "kmeans-merge", seed=0), cluster(few, 3, "kmeans", seed=0))


def even_groups(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three round blobs of 300 points each, far apart."""
    rng = np.random.default_rng(seed)
    points = np.r_[
        rng.normal([0, 0], 1.0, (300, 2)), rng.normal([12, 0], 1.0, (300, 2)), rng.normal([0, 12], 1.0, (300, 2))
    ]
    return points, np.repeat([0, 1, 2], 300)


def test_auto_takes_kmeans_merge_where_it_keeps_more_neighbours_together_and_says_why():
    points, labels = uneven_groups()
    choice = choose_clusterer(points, 3, seed=0)
    assert choice.chosen == "kmeans-merge"
    assert choice.agreement["kmeans-merge"] - choice.agreement["kmeans"] > MERGE_MARGIN
    assert clustering_scores(labels, choice.clusters)["accuracy"] == 1.0
    recorded = choice.to_dict()
    assert recorded["chosen"] == "kmeans-merge" and "kmeans-merge" in recorded["reason"]
    assert np.array_equal(cluster(points, 3, "auto", seed=0), choice.clusters)


def test_auto_keeps_kmeans_and_its_exact_clusters_on_even_groups():
    points, labels = even_groups()
    choice = choose_clusterer(points, 3, seed=0)
    assert choice.chosen == "kmeans"
    assert np.array_equal(choice.clusters, cluster(points, 3, "kmeans", seed=0))  # the default is unchanged here
    assert clustering_scores(labels, choice.clusters)["accuracy"] == 1.0
    few = points[::150]  # 6 points: kmeans-merge cannot over-cluster, so there is nothing to choose
    assert choose_clusterer(few, 3, seed=0).chosen == "kmeans"


def test_auto_keeps_two_clusters_k_means_even_where_a_merge_would_keep_more_neighbours_together():
    points, _ = uneven_groups()
    points = points[:900]  # the disc and the larger blob: two groups, 700 / 200
    choice = choose_clusterer(points, 2, seed=0)
    assert choice.chosen == "kmeans" and choice.reason == TWO_CLUSTERS_REASON
    assert np.array_equal(choice.clusters, cluster(points, 2, "kmeans", seed=0))
    assert choice.to_dict()["neighbour_agreement"] == {}


def test_auto_balance_keeps_the_sizes_only_of_clusters_kmeans_merge_found():
    assert resolve_balance("auto", "kmeans-merge") == "prior"
    assert resolve_balance("auto", "kmeans") == "uniform"
    assert resolve_balance("uniform", "kmeans-merge") == "uniform"  # a balance the user set stands
    assert resolve_balance("prior", "kmeans") == "prior"


def test_kmeans_on_many_points_is_faiss_and_finds_the_same_groups(monkeypatch):
    import aeclust.cluster.clusterers

    points, labels = even_groups()
    monkeypatch.setattr(aeclust.cluster.clusterers, "KMEANS_EXACT_LIMIT", 100)  # 900 points: faiss's k-means
    monkeypatch.setattr(aeclust.cluster.clusterers, "FAISS_POINTS_PER_CLUSTER", 50)  # fitted on a sample of 150
    faiss_clusters = cluster(points, 3, "kmeans", seed=0)
    assert clustering_scores(labels, faiss_clusters)["accuracy"] == 1.0
    assert np.array_equal(faiss_clusters, cluster(points, 3, "kmeans", seed=0))  # the same seed, the same clusters
    merged = cluster(*uneven_groups()[:1], 3, "kmeans-merge", seed=0)  # its pieces by faiss too
    assert clustering_scores(uneven_groups()[1], merged)["accuracy"] > 0.95


def test_pooled_features_of_memory_mapped_latents_equal_a_whole_array_mean_bit_for_bit(tmp_path, monkeypatch):
    from aeclust.cluster import features as embed

    monkeypatch.setattr(embed, "POOL_CHUNK", 7)  # several chunks, the last one short
    latents = np.random.default_rng(0).normal(size=(40, 5, 4, 4)).astype(np.float32)
    np.save(tmp_path / "latents.npy", latents)
    mapped = np.load(tmp_path / "latents.npy", mmap_mode="r")
    for scaling in ("none", "l2", "standardize"):
        expected = latents.mean(axis=(2, 3))
        if scaling == "l2":
            expected = expected / (np.linalg.norm(expected, axis=1, keepdims=True) + 1e-12)
        elif scaling == "standardize":
            expected = (expected - expected.mean(axis=0)) / (expected.std(axis=0) + 1e-6)
        assert np.array_equal(embed.latent_features(mapped, "pool", scaling), expected.astype(np.float32))
    both = embed.latent_features(mapped, "pool+flatten")
    assert np.array_equal(both[:, :5], latents.mean(axis=(2, 3)))
    assert np.array_equal(both[:, 5:], latents.reshape(40, -1))


def test_whitened_kmeans_parts_the_groups_that_a_wider_direction_hides():
    """Two groups apart along one direction, with five wide but single-peaked (normal) directions of noise beside it:
    k-means cuts across the widest noise; whitened, every direction weighs alike and the groups part. The cut on 4
    whitened dimensions leaves the groups' direction out (it is the narrowest); the vote of three cuts does not."""
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 200)
    points = np.c_[(2 * truth - 1) + rng.normal(0, 0.3, 400), rng.normal(0, 4, (400, 5))]
    assert clustering_scores(truth, cluster(points, 2, "kmeans", seed=0))["accuracy"] < 0.7
    cuts = whitened_cuts(points, 2, seed=0).cuts
    assert [round(clustering_scores(truth, cut)["accuracy"], 1) for cut in cuts] == [0.5, 1.0, 1.0]
    voted = cluster(points, 2, "whitened-kmeans", seed=0)
    assert clustering_scores(truth, voted)["accuracy"] > 0.97
    np.testing.assert_array_equal(cluster(points, 2, "whitened-kmeans", seed=0), voted)


def test_cuts_are_renumbered_to_match_before_they_vote_and_a_tie_goes_to_the_first():
    reference = np.array([0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(align_to(reference, np.array([2, 2, 0, 0, 1, 1]), 3), reference)
    np.testing.assert_array_equal(vote([np.array([0, 1, 2]), np.array([1, 1, 2]), np.array([1, 0, 2])], 3), [1, 1, 2])
    np.testing.assert_array_equal(vote([np.array([0, 2]), np.array([1, 1])], 3), [0, 2])  # one vote each: the first's


@pytest.mark.parametrize("method", sorted(CLUSTERERS))
def test_every_clusterer_keeps_what_it_learned_and_places_points_as_it_cut_them(method):
    points, labels = even_groups(seed=2)
    fitted = create_clusterer(method, 3, seed=0).fit(points)
    assert clustering_scores(labels, fitted.labels_)["accuracy"] == 1.0
    np.testing.assert_array_equal(fitted.predict(points), fitted.labels_)
    moved = points[:5] + 0.1  # new points near the first group go where its points went
    np.testing.assert_array_equal(fitted.predict(moved), fitted.labels_[:5])
    kept = Clusterer.from_state({name: np.array(array) for name, array in fitted.state().items()})
    np.testing.assert_array_equal(kept.predict(points), fitted.labels_)
    assert kept.places_others == (method == "whitened-kmeans")


def test_an_unknown_clusterer_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="unknown clusterer 'kmedoids'.*kmeans"):
        create_clusterer("kmedoids", 3)


def test_latent_features_scale_other_latents_by_the_statistics_they_were_fitted_to():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 2.0, (200, 3, 2, 2)).astype(np.float32)
    fitted = LatentFeatures("pool", "standardize").fit(train)
    other = rng.normal(5.0, 2.0, (10, 3, 2, 2)).astype(np.float32)
    expected = (other.mean(axis=(2, 3)) - train.mean(axis=(2, 3)).mean(axis=0)) / (train.mean(axis=(2, 3)).std(axis=0) + 1e-6)
    np.testing.assert_allclose(fitted.transform(other), expected, rtol=1e-5)
    assert not np.allclose(fitted.transform(other), LatentFeatures("pool", "standardize").fit_transform(other))
    with pytest.raises(ConfigError, match="unknown scaling 'minmax'"):
        LatentFeatures("pool", "minmax").fit(train)


@pytest.mark.parametrize("clusterer, reducer", [("kmeans", "none"), ("whitened-kmeans", "none"), ("kmeans", "pca")])
def test_the_clustering_stage_saves_as_plain_arrays_and_loads_to_place_new_latents_alike(
    tmp_path, clusterer, reducer
):
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 150)
    latents = (rng.normal(size=(300, 8, 2, 2)) + 3.0 * groups[:, None, None, None]).astype(np.float32)
    settings = ClusterConfig(k=2, latent="pool", scaling="standardize", reducer=reducer, components=4,
                             embedder="none", clusterer=clusterer)  # fmt: skip
    stage = ClusteringStage(settings, seed=0).fit(latents)
    assert clustering_scores(groups, stage.labels_)["accuracy"] == 1.0
    stage.save(tmp_path / "centres.npz")
    with np.load(tmp_path / "centres.npz", allow_pickle=False) as saved:  # no pickled objects in it
        assert {"mode", "scaling", "mean", "std", "centres_0"} <= set(saved.files)
    loaded = ClusteringStage.load(tmp_path / "centres.npz")
    new = (rng.normal(size=(40, 8, 2, 2)) + 3.0 * groups[::150].repeat(20)[:, None, None, None]).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(new), stage.predict(new))
    np.testing.assert_array_equal(loaded.predict(latents), stage.labels_)
    assert loaded.places_others == stage.places_others == (clusterer == "whitened-kmeans")
