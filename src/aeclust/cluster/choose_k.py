"""Choose the number of clusters from the data: a criterion scores every k in a range, the best score wins.

Every criterion looks at the points the clusterer would see (for the default model, pooled unit-length latents)
through a random subsample of at most :data:`SAMPLE_SIZE` of them, so that choosing costs seconds for any number
of images, and the same seed draws the same subsample and gives the same choice. Candidate clusterings are
k-means, the default clusterer, whatever the configured one. ``docs/results.md`` (choosing k) measures them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.sparse import diags
from scipy.sparse.linalg import eigsh
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, silhouette_score
from sklearn.metrics.pairwise import pairwise_distances
from sklearn.neighbors import kneighbors_graph
from threadpoolctl import threadpool_limits

from aeclust.config import ClusterConfig
from aeclust.errors import ConfigError, unknown_name

SAMPLE_SIZE = 2000  # points scored; silhouette's distance matrix is then 2,000² floats (32 MB)
KMEANS_RESTARTS = 3  # fewer than the clustering stage's 10: candidates are compared, not kept
STABILITY_PAIRS = 3  # pairs of disjoint halves per k
GRAPH_NEIGHBOURS = 10  # of the kNN graph whose Laplacian gives the eigengap
OVERCLUSTER_FACTOR = 2  # the merge criterion first cuts the points into this many times k_max clusters
UNIT_LENGTH_TOLERANCE = 1e-3


def _kmeans(points: np.ndarray, k: int, seed: int) -> KMeans:
    return KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=seed).fit(points)


def _metric(points: np.ndarray) -> str:
    """Cosine for unit-length rows (contrastive latents compare directions), Euclidean for anything else."""
    lengths = np.linalg.norm(points, axis=1)
    return "cosine" if np.allclose(lengths, 1.0, atol=UNIT_LENGTH_TOLERANCE) else "euclidean"


def silhouette_scores(points: np.ndarray, ks: range, seed: int) -> dict[int, float]:
    """Mean silhouette of k-means' clusters: how much nearer each point is to its own cluster than to the next."""
    distances = pairwise_distances(points, metric=_metric(points))
    return {k: float(silhouette_score(distances, _kmeans(points, k, seed).labels_, metric="precomputed")) for k in ks}


def calinski_harabasz_scores(points: np.ndarray, ks: range, seed: int) -> dict[int, float]:
    """Between-cluster over within-cluster dispersion of k-means' clusters, each divided by its degrees of freedom."""
    return {k: float(calinski_harabasz_score(points, _kmeans(points, k, seed).labels_)) for k in ks}


def stability_scores(points: np.ndarray, ks: range, seed: int) -> dict[int, float]:
    """Mean adjusted Rand index between k-means fitted on two disjoint halves, both predicting every point."""
    rng = np.random.default_rng(seed)
    halves = []
    for _ in range(STABILITY_PAIRS):
        order = rng.permutation(len(points))
        halves.append((order[: len(order) // 2], order[len(order) // 2 :]))
    scores = {}
    for k in ks:
        agreements = [
            adjusted_rand_score(
                _kmeans(points[first], k, seed).predict(points), _kmeans(points[second], k, seed).predict(points)
            )
            for first, second in halves
        ]
        scores[k] = float(np.mean(agreements))
    return scores


def eigengap_scores(points: np.ndarray, ks: range, seed: int) -> dict[int, float]:
    """λ_k − λ_(k−1) of the normalised Laplacian of the symmetric kNN graph: k well-separated groups give k
    eigenvalues near 0 and then a jump."""
    graph = kneighbors_graph(points, min(GRAPH_NEIGHBOURS, len(points) - 1), metric=_metric(points))
    graph = graph.maximum(graph.T)
    # The Laplacian's smallest eigenvalues are 1 minus the largest of the normalised adjacency D^-½ A D^-½, which
    # ARPACK finds quickly; a fixed start vector makes the result the same every time.
    scale = diags(1.0 / np.sqrt(np.asarray(graph.sum(axis=1)).ravel()))
    adjacency = scale @ graph @ scale
    start = np.random.default_rng(seed).uniform(0.5, 1.5, len(points))
    largest = eigsh(adjacency, k=ks.stop + 1, which="LA", v0=start, return_eigenvectors=False)
    eigenvalues = np.sort(1.0 - largest)
    return {k: float(eigenvalues[k] - eigenvalues[k - 1]) for k in ks}


def merge_scores(points: np.ndarray, ks: range, seed: int) -> dict[int, float]:
    """Over-cluster with k-means, merge the centres by Ward linkage, and score k by how much the merge that would
    leave k − 1 clusters costs relative to the one that left k (a large jump: k groups that stand apart)."""
    many = min(OVERCLUSTER_FACTOR * ks.stop, len(points) - 1)
    centres = _kmeans(points, many, seed).cluster_centers_
    heights = linkage(centres, method="ward")[:, 2]  # ascending; merge i leaves many − 1 − i clusters
    return {k: float(heights[many - k] / max(heights[many - k - 1], 1e-12)) for k in ks if k < many}


@dataclass(frozen=True)
class Criterion:
    score: Callable[[np.ndarray, range, int], dict[int, float]]
    best: str  # how the reason sentence names the winning score


K_CRITERIA: dict[str, Criterion] = {
    "silhouette": Criterion(silhouette_scores, "the highest mean silhouette"),
    "stability": Criterion(stability_scores, "the most stable clusters (ARI between k-means on disjoint halves)"),
    "eigengap": Criterion(eigengap_scores, "the largest eigengap of the kNN-graph Laplacian"),
    "calinski-harabasz": Criterion(calinski_harabasz_scores, "the highest Calinski-Harabasz index"),
    "merge": Criterion(merge_scores, f"the largest jump in merge cost of {OVERCLUSTER_FACTOR}·k_max k-means centres"),
}
DEFAULT_CRITERION = ClusterConfig.k_criterion


@dataclass
class KSelection:
    """What :func:`choose_k` tried and why it chose; :meth:`to_dict` is ``metrics.json``'s ``k_selection``."""

    criterion: str
    k_range: tuple[int, int]
    scores: dict[int, float]
    chosen: int
    reason: str

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion,
            "k_range": list(self.k_range),
            # JSON has no NaN: a score that could not be computed is null
            "scores": {str(k): value if math.isfinite(value) else None for k, value in self.scores.items()},
            "chosen": self.chosen,
            "reason": self.reason,
        }


def check_k_range(k_min: int, k_max: int, n_points: int, where: str, points: str = "images") -> None:
    """Refuse a range of k that the criteria cannot score on ``n_points`` ``points``; ``where`` names the data."""
    if not 2 <= k_min <= k_max:
        raise ConfigError(f"{where}: k range {k_min}:{k_max}: expected LO:HI with 2 <= LO <= HI")
    if k_max > n_points // 2:
        raise ConfigError(
            f"{where}: k range {k_min}:{k_max} does not fit {n_points} {points}; expected HI at most "
            f"{n_points // 2}, so that every candidate cluster can hold two"
        )


def choose_k(
    points: np.ndarray, k_min: int, k_max: int, criterion: str = DEFAULT_CRITERION, seed: int = 0
) -> KSelection:
    """Score every k in ``k_min..k_max`` on a subsample of ``points`` and return the best, with the reason."""
    if criterion not in K_CRITERIA:
        raise unknown_name("k criterion", criterion, list(K_CRITERIA))
    check_k_range(k_min, k_max, len(points), "choose_k", "points")
    sample_size = min(len(points), max(SAMPLE_SIZE, 4 * k_max))
    sample = np.sort(np.random.default_rng(seed).choice(len(points), sample_size, replace=False))
    subsample = np.asarray(points[sample], dtype=np.float64)
    ks = range(k_min, k_max + 1)
    # One thread: on a few thousand points OpenMP's threads wait on each other more than they help, and on a
    # machine that is busy training they made k-means 20-50 times slower (measured on 2 cores).
    with threadpool_limits(1):
        scores = {k: float(score) for k, score in K_CRITERIA[criterion].score(subsample, ks, seed).items()}
    scores = {k: scores.get(k, math.nan) for k in ks}
    finite = {k: value for k, value in scores.items() if math.isfinite(value)}
    if not finite:
        raise ConfigError(f"criterion {criterion} could not score any k in {k_min}:{k_max} on {len(points)} points")
    chosen = max(finite, key=finite.get)  # the smallest k among equal scores
    runner_up = max((k for k in finite if k != chosen), key=finite.get, default=None)
    reason = f"k={chosen} has {K_CRITERIA[criterion].best} ({finite[chosen]:.3g}"
    if runner_up is not None:
        reason += f"; next best k={runner_up} at {finite[runner_up]:.3g}"
    reason += f") among k={k_min}..{k_max}, on {sample_size} of {len(points)} images."
    return KSelection(criterion, (k_min, k_max), scores, chosen, reason)
