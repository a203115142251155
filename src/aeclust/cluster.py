"""Points → k clusters, by name."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from aeclust.choose_k import KSelection, choose_k
from aeclust.config import AUTO_K, ClusterConfig
from aeclust.embed import latent_features
from aeclust.errors import ConfigError, unknown_name
from aeclust.metrics import matching
from aeclust.neighbours import nearest_neighbours
from aeclust.reduce import embed_2d, reduce, whitening

# Above this many points k-means is faiss's: scikit-learn's, with its restarts, took 51 s on 50,000 points of 128
# numbers on 2 cores (docs/results.md, section 14), so about 17 minutes at a million; faiss fits on a sample of at
# most FAISS_POINTS_PER_CLUSTER points per cluster and assigns every point to the nearest centre, in seconds.
KMEANS_EXACT_LIMIT = 200_000
FAISS_POINTS_PER_CLUSTER = 10_000


def kmeans_labels(points: np.ndarray, k: int, seed: int, restarts: int = 10) -> np.ndarray:
    """k-means: scikit-learn's up to :data:`KMEANS_EXACT_LIMIT` points, faiss's above it."""
    if len(points) <= KMEANS_EXACT_LIMIT:
        return KMeans(n_clusters=k, n_init=restarts, random_state=seed).fit_predict(points)
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            f"k-means on {len(points)} points needs faiss (pip install faiss-cpu), which is not installed"
        ) from None
    points = np.ascontiguousarray(points, dtype=np.float32)
    fitted = faiss.Kmeans(
        points.shape[1], k, niter=25, nredo=restarts, seed=seed, max_points_per_centroid=FAISS_POINTS_PER_CLUSTER
    )
    fitted.train(points)
    return fitted.index.search(points, 1)[1][:, 0].astype(np.int64)


def _kmeans(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    return kmeans_labels(points, k, seed)


def _gmm(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    return GaussianMixture(n_components=k, n_init=3, random_state=seed).fit_predict(points)


def _agglomerative(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(points)


PIECES_PER_CLUSTER = 10  # how finely the merge clusterer first cuts the points: this many k-means pieces per cluster
MERGE_NEIGHBOURS = 10  # of each point, in the graph whose edges say which pieces belong together


def neighbour_indices(points: np.ndarray, neighbours: int = MERGE_NEIGHBOURS) -> np.ndarray:
    """Each point's ``neighbours`` nearest others (cosine distance for unit-length rows, else euclidean)."""
    metric = "cosine" if np.allclose(np.linalg.norm(points, axis=1), 1.0, atol=1e-3) else "euclidean"
    return nearest_neighbours(points, neighbours, metric=metric).numpy()


def _kmeans_merge(points: np.ndarray, k: int, seed: int, indices: np.ndarray | None = None) -> np.ndarray:
    """Over-cluster with k-means, then join the pieces that are each other's neighbours, down to k clusters.

    k-means draws boundaries that give clusters of about equal spread, so a class that covers much of the space (as
    contrastive features spread every class out) is cut in parts while small ones are merged. Here k-means only
    cuts the points into many small pieces; two pieces are then as close as the share of their points' nearest
    neighbours that fall in each other (edge count over the geometric mean of their sizes), and average linkage
    merges the closest pieces until k are left. A large class stays whole when its pieces are neighbours of each
    other, whatever its size, so uneven groups come out uneven. scikit-learn has each step, not the chain.
    ``indices`` are the points' nearest neighbours when the caller has them already.
    """
    pieces_wanted = min(PIECES_PER_CLUSTER * k, len(points) // 2)
    if pieces_wanted <= k:  # too few points to over-cluster
        return _kmeans(points, k, seed)
    pieces = kmeans_labels(points, pieces_wanted, seed, restarts=3)
    indices = neighbour_indices(points) if indices is None else indices
    neighbours = indices.shape[1]
    edges = coo_matrix(
        (np.ones(indices.size), (np.repeat(pieces, neighbours), pieces[indices.reshape(-1)])),
        shape=(pieces_wanted, pieces_wanted),
    ).toarray()
    edges += edges.T
    sizes = np.bincount(pieces, minlength=pieces_wanted).astype(np.float64)
    affinity = edges / np.sqrt(np.outer(sizes, sizes)).clip(min=1.0)
    distance = affinity.max() - affinity
    np.fill_diagonal(distance, 0.0)
    merged = AgglomerativeClustering(n_clusters=k, metric="precomputed", linkage="average").fit_predict(distance)
    return merged[pieces]


WHITENED_KMEANS = "whitened-kmeans"
# Its cuts: k-means on the points whitened to each of these numbers of dimensions.
WHITENED_CUTS = (4, 8, 16)


def align_to(reference: np.ndarray, clusters: np.ndarray, k: int) -> np.ndarray:
    """``clusters`` renumbered so that each of its clusters takes the number of the ``reference`` cluster it most
    overlaps (one to one: the Hungarian matching the scores use); one left unmatched takes a number none took."""
    matched = matching(reference, clusters)
    unused = iter(sorted(set(range(k)) - set(matched.values())))
    return np.array([matched[c] if c in matched else next(unused) for c in range(k)], dtype=np.int64)[clusters]


def vote(cuts: list[np.ndarray], k: int) -> np.ndarray:
    """Each point's cluster by most of ``cuts`` (all numbered as the first), a tie going to the first cut's."""
    votes = np.zeros((len(cuts[0]), k), dtype=np.int64)
    for cut in cuts:
        votes[np.arange(len(cut)), cut] += 1
    winners = votes.argmax(axis=1)
    tied = votes.max(axis=1) == votes[np.arange(len(cuts[0])), cuts[0]]
    return np.where(tied, cuts[0], winners)


@dataclass
class WhitenedCuts:
    """whitened-kmeans's cuts of some points, and the whitenings they were cut in, fitted to those points: by them
    other points are placed as these were (:class:`aeclust.predict.CentreAssigner`)."""

    spaces: list[PCA]  # one per number of :data:`WHITENED_CUTS` dimensions
    cuts: list[np.ndarray]  # one per space, numbered as the first

    def vote(self, k: int) -> np.ndarray:
        """Each point's cluster by most cuts (:func:`whitened_vote`)."""
        return whitened_vote(self.cuts, k).astype(np.int64)


def whitened_cuts(points: np.ndarray, k: int, seed: int) -> WhitenedCuts:
    """k-means on ``points`` whitened to each of :data:`WHITENED_CUTS` dimensions."""
    check_k(k, len(points))
    spaces = [whitening(dimensions, points, seed) for dimensions in WHITENED_CUTS]
    cuts = [kmeans_labels(space.fit_transform(points).astype(np.float32), k, seed) for space in spaces]
    return WhitenedCuts(spaces, [cuts[0]] + [align_to(cuts[0], cut, k) for cut in cuts[1:]])


def _whitened_kmeans(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means on whitened dimensions: each point to the cluster most of three cuts put it in.

    A long-trained contrastive encoder's widest directions are not the ones that part its groups (docs/results.md,
    section 22: after an hour on the embedded set k-means reached 0.83 where a linear probe reached 0.91). Whitened
    to a few principal components, every direction weighs alike and k-means finds the groups, but which number of
    components is best differs by set (16 on animals-vs-vehicles, 4–8 on birds-vs-airplanes); at 20 minutes the vote
    of 4, 8 and 16 came within 0.005 of the best single one on both, and above the refinement on both. On features
    trained a few epochs only, one cut can follow a direction not yet formed, and the refinement does better.
    scikit-learn has the whitening and k-means, not the vote.
    """
    return whitened_cuts(points, k, seed).vote(k)


def whitened_vote(cuts: list[np.ndarray], k: int) -> np.ndarray:
    """The vote of :func:`whitened_cuts`' cuts (or of the clusters new points would join in each), a tie going to
    the middle cut, 8 dimensions."""
    return vote([cuts[1], cuts[0], *cuts[2:]], k)


def neighbour_agreement(indices: np.ndarray, clusters: np.ndarray) -> float:
    """The share of (point, nearest neighbour) pairs that fall in the same cluster."""
    return float((clusters[indices] == clusters[:, None]).mean())


# How much more often a point's neighbours must share its cluster under kmeans-merge than under k-means before the
# "auto" clusterer takes kmeans-merge. Chosen on train labels of 12 runs (docs/results.md, section 17): where the
# merge clusters were better, their agreement was higher by 0.005 to 0.020; where they were not, it was lower or level.
MERGE_MARGIN = 0.003
# With two clusters the merge can join pieces into any lopsided pair whose boundary crosses fewer neighbour pairs: on
# birds-vs-airplanes (seed 0) it kept 1.4 points more pairs with a 75 / 25 split and lost 0.17 accuracy. Two
# clusters stay k-means's; from three up, every balanced set measured chose k-means anyway.
MERGE_MIN_K = 3
TWO_CLUSTERS_REASON = "two clusters are k-means's: kmeans-merge can keep more neighbour pairs by a lopsided split"
TOO_FEW_REASON = "too few points to over-cluster: kmeans-merge would be k-means"


@dataclass
class ClustererChoice:
    """What the "auto" clusterer tried and why it chose; :meth:`to_dict` is ``metrics.json``'s ``clusterer_choice``."""

    chosen: str
    clusters: np.ndarray
    agreement: dict[str, float]  # per clusterer tried: the share of nearest-neighbour pairs inside one cluster
    reason_given: str | None = None  # when the choice was made without comparing the two

    @property
    def reason(self) -> str:
        if self.reason_given is not None:
            return self.reason_given
        merge, kmeans = self.agreement["kmeans-merge"], self.agreement["kmeans"]
        above = "above" if self.chosen == "kmeans-merge" else "not above"
        return (
            f"{100 * merge:.1f} % of nearest-neighbour pairs share a cluster under kmeans-merge, {100 * kmeans:.1f} % "
            f"under k-means: {100 * (merge - kmeans):+.1f} points, {above} the margin of {100 * MERGE_MARGIN:.1f}"
        )

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen, "neighbour_agreement": self.agreement, "margin": MERGE_MARGIN, "reason": self.reason,
        }  # fmt: skip


def choose_clusterer(points: np.ndarray, k: int, seed: int) -> ClustererChoice:
    """k-means, or kmeans-merge where its clusters hold clearly more of the points' nearest neighbours together.

    k-means cuts a large group in parts and joins small ones, which costs it neighbour pairs across the cut; on even
    groups its clusters keep as many pairs as the merge's or more, and it is the more accurate of the two.
    """
    check_k(k, len(points))
    kmeans = _kmeans(points, k, seed)
    if k < MERGE_MIN_K:
        return ClustererChoice("kmeans", kmeans, {}, reason_given=TWO_CLUSTERS_REASON)
    if min(PIECES_PER_CLUSTER * k, len(points) // 2) <= k:
        return ClustererChoice("kmeans", kmeans, {}, reason_given=TOO_FEW_REASON)
    indices = neighbour_indices(points)
    merged = _kmeans_merge(points, k, seed, indices)
    agreement = {"kmeans": neighbour_agreement(indices, kmeans), "kmeans-merge": neighbour_agreement(indices, merged)}
    if agreement["kmeans-merge"] - agreement["kmeans"] > MERGE_MARGIN:
        return ClustererChoice("kmeans-merge", merged, agreement)
    return ClustererChoice("kmeans", kmeans, agreement)


CLUSTERERS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "kmeans": _kmeans,
    "kmeans-merge": _kmeans_merge,
    "gmm": _gmm,
    "agglomerative": _agglomerative,
    WHITENED_KMEANS: _whitened_kmeans,
    "auto": lambda points, k, seed: choose_clusterer(points, k, seed).clusters,
}


def check_k(k: int, count: int) -> None:
    if not 2 <= k <= count:
        raise ConfigError(f"k={k} must be between 2 and the number of images ({count})")


def cluster(points: np.ndarray, k: int, method: str = "kmeans", seed: int = 0) -> np.ndarray:
    """Assign each row of ``points`` to one of ``k`` clusters, numbered 0..k-1."""
    if method not in CLUSTERERS:
        raise unknown_name("clusterer", method, list(CLUSTERERS))
    check_k(k, len(points))
    return CLUSTERERS[method](points, k, seed).astype(np.int64)


@dataclass
class Clustering:
    """What the clustering stage produced for one set of latents."""

    features: np.ndarray  # after the reducer
    embedding: np.ndarray  # 2-D (or the reducer's output when the embedder is "none")
    clusters: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: reduce, embed, choose_k, cluster
    k_selection: KSelection | None = None  # how k was chosen, when the configuration left it to the data
    clusterer_choice: ClustererChoice | None = None  # which clusterer the "auto" clusterer took, and why
    whitened: WhitenedCuts | None = None  # whitened-kmeans's, by which other images are placed as these were

    @property
    def clusterer(self) -> str | None:
        """The clusterer whose clusters these are, when the "auto" clusterer chose one."""
        return None if self.clusterer_choice is None else self.clusterer_choice.chosen


def embedded_latents(
    latents: np.ndarray, config: ClusterConfig, seed: int = 0, seconds: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The clustering stage before its cut: the latents' features after the reducer, and their embedding. The time
    each took is recorded in ``seconds`` (as "reduce" and "embed") when it is given."""
    started = time.perf_counter()
    reduced = reduce(latent_features(latents, config.latent, config.scaling), config, seed)
    reduced_at = time.perf_counter()
    embedding = embed_2d(reduced, config, seed)
    if seconds is not None:
        seconds.update(reduce=reduced_at - started, embed=time.perf_counter() - reduced_at)
    return reduced, embedding


def cluster_latents(latents: np.ndarray, config: ClusterConfig, seed: int = 0) -> Clustering:
    """The whole clustering stage: latent features → reducer → embedder → clusterer.

    With ``config.k`` = :data:`AUTO_K`, k is first chosen on the points the clusterer sees (``config.k_criterion``
    over ``config.k_min..k_max``).
    """
    seconds: dict[str, float] = {}
    reduced, embedding = embedded_latents(latents, config, seed, seconds)
    embedded_at = time.perf_counter()
    selection = None
    if config.k == AUTO_K:
        selection = choose_k(embedding, config.k_min, config.k_max, config.k_criterion, seed)
    chosen_at = time.perf_counter()
    k = config.k if selection is None else selection.chosen
    choice, whitened = None, None
    if config.clusterer == "auto":
        choice = choose_clusterer(embedding, k, seed)
        clusters = choice.clusters
    elif config.clusterer == WHITENED_KMEANS:  # its whitenings kept, to place val by without fitting them again
        whitened = whitened_cuts(embedding, k, seed)
        clusters = whitened.vote(k)
    else:
        clusters = cluster(embedding, k, config.clusterer, seed)
    if selection is not None:
        seconds["choose_k"] = chosen_at - embedded_at
    seconds["cluster"] = time.perf_counter() - chosen_at
    return Clustering(reduced, embedding, clusters, seconds, selection, choice, whitened)
