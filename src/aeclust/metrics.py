"""Scores: binary accuracy, Hungarian-matched accuracy, NMI, ARI, reconstruction MSE."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, confusion_matrix, normalized_mutual_info_score

from aeclust.errors import InputError


def _check_pair(labels: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, clusters = np.asarray(labels).reshape(-1), np.asarray(clusters).reshape(-1)
    if len(labels) != len(clusters):
        raise InputError(f"expected as many labels as cluster assignments, found {len(labels)} and {len(clusters)}")
    if len(labels) == 0:
        raise InputError("expected at least one label, found none")
    return labels, clusters


def binary_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """max(acc, 1 − acc) for two clusters: the better of the two ways to name them."""
    labels, clusters = _check_pair(labels, clusters)
    accuracy = float(np.mean(labels == clusters))
    return max(accuracy, 1.0 - accuracy)


def accuracy_of(labels: np.ndarray, clusters: np.ndarray) -> float:
    """max(acc, 1 − acc) for two binary label sets; Hungarian-matched accuracy otherwise."""
    if len(np.unique(labels)) == 2 and len(np.unique(clusters)) <= 2:
        binary = np.unique(labels, return_inverse=True)[1]
        return binary_accuracy(binary, clusters)
    return hungarian_accuracy(labels, clusters)


def matching(labels: np.ndarray, clusters: np.ndarray) -> dict[int, int]:
    """The cluster → class mapping that maximises agreement (Hungarian algorithm, scipy)."""
    labels, clusters = _check_pair(labels, clusters)
    classes, cluster_ids = np.unique(labels), np.unique(clusters)
    counts = np.zeros((len(cluster_ids), len(classes)), dtype=np.int64)
    np.add.at(counts, (np.searchsorted(cluster_ids, clusters), np.searchsorted(classes, labels)), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {int(cluster_ids[r]): int(classes[c]) for r, c in zip(rows, cols)}


def hungarian_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one naming of clusters by classes; any k."""
    labels, clusters = _check_pair(labels, clusters)
    mapping = matching(labels, clusters)
    named = np.array([mapping.get(int(c), -1) for c in clusters])
    return float(np.mean(named == labels))


def clustering_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """Hungarian accuracy, NMI and ARI, plus binary accuracy when both sides have two values."""
    labels, clusters = _check_pair(labels, clusters)
    scores = {
        "accuracy": hungarian_accuracy(labels, clusters),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
    }
    if set(np.unique(labels)) <= {0, 1} and set(np.unique(clusters)) <= {0, 1}:
        scores["binary_accuracy"] = binary_accuracy(labels, clusters)
    return scores


def matched_confusion(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: cluster named by its matched class)."""
    labels, clusters = _check_pair(labels, clusters)
    mapping = matching(labels, clusters)
    named = np.array([mapping.get(int(c), -1) for c in clusters])
    return confusion_matrix(labels, named, labels=np.unique(labels))


def mse(originals: np.ndarray, reconstructions: np.ndarray) -> float:
    """Mean squared error, in whatever space both arrays are in ([-1, 1] throughout aeclust)."""
    return float(np.mean((np.asarray(originals, dtype=np.float64) - reconstructions) ** 2))
