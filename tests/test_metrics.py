import numpy as np
import pytest

from aeclust.metrics import binary_accuracy, clustering_scores, hungarian_accuracy, matched_confusion, mse


def test_binary_accuracy_takes_the_better_naming():
    labels = np.array([0, 0, 1, 1, 1])
    assert binary_accuracy(labels, np.array([0, 0, 1, 1, 0])) == pytest.approx(0.8)
    assert binary_accuracy(labels, np.array([1, 1, 0, 0, 1])) == pytest.approx(0.8)  # same clustering, names swapped


def test_hungarian_accuracy_matches_clusters_to_classes():
    labels = np.array([0, 0, 1, 1, 2, 2])
    clusters = np.array([2, 2, 0, 0, 1, 0])  # 2→0, 0→1, 1→2: five of six right
    assert hungarian_accuracy(labels, clusters) == pytest.approx(5 / 6)


def test_hungarian_accuracy_with_more_clusters_than_classes():
    # Cluster 2 has no class left to take, so its one image counts as wrong.
    assert hungarian_accuracy(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2])) == pytest.approx(0.75)


def test_scores_of_a_perfect_and_of_a_useless_clustering():
    labels = np.array([0, 0, 1, 1] * 5)
    perfect = clustering_scores(labels, 1 - labels)
    assert perfect == pytest.approx({"accuracy": 1.0, "nmi": 1.0, "ari": 1.0, "binary_accuracy": 1.0})
    useless = clustering_scores(labels, np.array([0, 1] * 10))
    assert useless["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert useless["accuracy"] == pytest.approx(0.5)


def test_matched_confusion_rows_are_true_classes():
    confusion = matched_confusion(np.array([0, 0, 1, 1, 1]), np.array([1, 1, 0, 0, 1]))
    np.testing.assert_array_equal(confusion, [[2, 0], [1, 2]])


def test_mse_by_hand():
    assert mse(np.array([0.0, 1.0, -1.0]), np.array([0.0, 0.0, 1.0])) == pytest.approx((0 + 1 + 4) / 3)
