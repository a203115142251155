"""Points → k clusters: each clusterer an object that fits, places new points and saves as plain arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from aeclust.cluster.neighbours import nearest_neighbours
from aeclust.cluster.reduce import whitening
from aeclust.errors import ConfigError, unknown_name
from aeclust.metrics import matching

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


PIECES_PER_CLUSTER = 10  # how finely the merge clusterer first cuts the points: this many k-means pieces per cluster
MERGE_NEIGHBOURS = 10  # of each point, in the graph whose edges say which pieces belong together


def neighbour_indices(points: np.ndarray, neighbours: int = MERGE_NEIGHBOURS) -> np.ndarray:
    """Each point's ``neighbours`` nearest others (cosine distance for unit-length rows, else euclidean)."""
    metric = "cosine" if np.allclose(np.linalg.norm(points, axis=1), 1.0, atol=1e-3) else "euclidean"
    return nearest_neighbours(points, neighbours, metric=metric).numpy()


def kmeans_merge_labels(
    points: np.ndarray, k: int, seed: int, indices: np.ndarray | None = None
) -> np.ndarray:
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
        return kmeans_labels(points, k, seed)
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
    other points are placed as these were (:class:`WhitenedKMeans`)."""

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
    kmeans = kmeans_labels(points, k, seed)
    if k < MERGE_MIN_K:
        return ClustererChoice("kmeans", kmeans, {}, reason_given=TWO_CLUSTERS_REASON)
    if min(PIECES_PER_CLUSTER * k, len(points) // 2) <= k:
        return ClustererChoice("kmeans", kmeans, {}, reason_given=TOO_FEW_REASON)
    indices = neighbour_indices(points)
    merged = kmeans_merge_labels(points, k, seed, indices)
    agreement = {"kmeans": neighbour_agreement(indices, kmeans), "kmeans-merge": neighbour_agreement(indices, merged)}
    if agreement["kmeans-merge"] - agreement["kmeans"] > MERGE_MARGIN:
        return ClustererChoice("kmeans-merge", merged, agreement)
    return ClustererChoice("kmeans", kmeans, agreement)


def check_k(k: int, count: int) -> None:
    if not 2 <= k <= count:
        raise ConfigError(f"k={k} must be between 2 and the number of images ({count})")


@dataclass
class Whitening:
    """A fitted whitening (a scikit-learn PCA with ``whiten=True``) as two arrays, so that a clusterer can save it
    without pickling: points are placed at (x − offset) · projection."""

    offset: np.ndarray  # the fitted points' mean
    projection: np.ndarray  # features × components: the components, each divided by its standard deviation

    @classmethod
    def of(cls, fitted: PCA) -> Whitening:
        return cls(fitted.mean_, fitted.components_.T / np.sqrt(fitted.explained_variance_))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return (features - self.offset) @ self.projection


def centres_of(points: np.ndarray, clusters: np.ndarray, k: int) -> np.ndarray:
    """Each cluster's mean point; a cluster left empty gets a centre at infinity, to which no point is ever nearest."""
    nowhere = np.full(points.shape[1], np.inf)
    return np.stack(
        [points[clusters == c].mean(axis=0) if (clusters == c).any() else nowhere for c in range(k)]
    ).astype(np.float32)


def nearest_centre(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's nearest centre, and minus its distance to it (higher: more typical of its cluster)."""
    distances = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    nearest = distances.argmin(axis=1)
    return nearest, -np.sqrt(distances[np.arange(len(nearest)), nearest])


class Clusterer:
    """Points → ``n_clusters`` clusters, in scikit-learn's shape: :meth:`fit` cuts the points it is given
    (``labels_``) and keeps what new points are placed by (``centres_``, each cluster's mean point), :meth:`predict`
    places new points by it, and :meth:`state` / :meth:`from_state` keep it as plain arrays (no pickle).

    A kind is one subclass with a ``name`` and a :meth:`cut`, and one entry in :data:`CLUSTERERS`.
    """

    name = ""
    # Whether points cut apart from the ones it was fitted to are better placed by :meth:`predict` than cut on their
    # own (the run's val images): so for whitenings fitted to few points (docs/results.md, section 23).
    places_others: bool = False

    def __init__(self, n_clusters: int, *, seed: int = 0) -> None:
        self.n_clusters, self.seed = n_clusters, seed

    def cut(self, points: np.ndarray) -> np.ndarray:
        """Each point's cluster, numbered 0..n_clusters-1."""
        raise NotImplementedError

    def fit(self, points: np.ndarray) -> Clusterer:
        check_k(self.n_clusters, len(points))
        self.labels_ = self.cut(points).astype(np.int64)
        self.fit_centres(points, self.labels_)
        return self

    def fit_predict(self, points: np.ndarray) -> np.ndarray:
        return self.fit(points).labels_

    def fit_centres(self, points: np.ndarray, labels: np.ndarray) -> Clusterer:
        """Keep the centres of ``labels`` (a cut of ``points``, this clusterer's or a later stage's) to place new
        points by."""
        self.centres_ = centres_of(points, labels, self.n_clusters)
        return self

    def place(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each point's cluster and how typical of it the point is (higher: more)."""
        return nearest_centre(points, self.centres_)

    def predict(self, points: np.ndarray) -> np.ndarray:
        return self.place(points)[0]

    def state(self) -> dict[str, np.ndarray]:
        return {"centres_0": self.centres_}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], seed: int = 0) -> Clusterer:
        """The placing part of a fitted clusterer, from :meth:`state`'s arrays: whitened-kmeans where they hold
        whitenings, else nearest centres."""
        kind = WhitenedKMeans if "offset_0" in arrays else NearestCentres
        return kind._from_state(arrays, seed)

    @classmethod
    def _from_state(cls, arrays: dict[str, np.ndarray], seed: int) -> Clusterer:
        clusterer = cls(len(arrays["centres_0"]), seed=seed)
        clusterer.centres_ = arrays["centres_0"]
        return clusterer


class NearestCentres(Clusterer):
    """No cut of its own: the centres of a cut made elsewhere (:meth:`fit_centres`), by which points are placed, as a
    t-SNE clustering's new points are (t-SNE cannot place them)."""

    name = "centres"


class KMeansClusterer(Clusterer):
    name = "kmeans"

    def cut(self, points: np.ndarray) -> np.ndarray:
        return kmeans_labels(points, self.n_clusters, self.seed)


class GaussianMixtureClusterer(Clusterer):
    name = "gmm"

    def cut(self, points: np.ndarray) -> np.ndarray:
        return GaussianMixture(n_components=self.n_clusters, n_init=3, random_state=self.seed).fit_predict(points)


class AgglomerativeClusterer(Clusterer):
    name = "agglomerative"

    def cut(self, points: np.ndarray) -> np.ndarray:
        return AgglomerativeClustering(n_clusters=self.n_clusters, linkage="ward").fit_predict(points)


class KMeansMergeClusterer(Clusterer):
    """Over-cluster with k-means, then join neighbouring pieces (:func:`kmeans_merge_labels`)."""

    name = "kmeans-merge"

    def cut(self, points: np.ndarray) -> np.ndarray:
        return kmeans_merge_labels(points, self.n_clusters, self.seed)


class AutoClusterer(Clusterer):
    """k-means, or kmeans-merge where its clusters keep clearly more nearest-neighbour pairs together
    (:func:`choose_clusterer`); ``choice_`` says which and why."""

    name = "auto"

    def cut(self, points: np.ndarray) -> np.ndarray:
        self.choice_ = choose_clusterer(points, self.n_clusters, self.seed)
        return self.choice_.clusters


class WhitenedKMeans(Clusterer):
    """k-means on whitened dimensions: each point to the cluster most of three cuts put it in.

    A long-trained contrastive encoder's widest directions are not the ones that part its groups (docs/results.md,
    section 22: after an hour on the embedded set k-means reached 0.83 where a linear probe reached 0.91). Whitened
    to a few principal components, every direction weighs alike and k-means finds the groups, but which number of
    components is best differs by set (16 on animals-vs-vehicles, 4–8 on birds-vs-airplanes); at 20 minutes the vote
    of 4, 8 and 16 came within 0.005 of the best single one on both, and above the refinement on both. On features
    trained a few epochs only, one cut can follow a direction not yet formed, and the refinement does better.
    scikit-learn has the whitening and k-means, not the vote.

    It keeps its whitenings (``whitened_``, fitted to the points it cut) and, in each, the centres of its vote's
    clusters as that whitening's cut numbers them, so a new point is placed in each whitening as the fitted points
    were, and takes the cluster most of them give.
    """

    name = WHITENED_KMEANS
    places_others = True

    def cut(self, points: np.ndarray) -> np.ndarray:
        self.whitened_ = whitened_cuts(points, self.n_clusters, self.seed)
        return self.whitened_.vote(self.n_clusters)

    def fit_centres(self, points: np.ndarray, labels: np.ndarray) -> Clusterer:
        # Each cut renumbered as ``labels`` is, so that each space has its own cut's centres and the fitted points are
        # placed as they were, not by the vote's centres in spaces it was not cut in.
        k = self.n_clusters
        self.spaces_ = [Whitening.of(space) for space in self.whitened_.spaces]
        cuts = [align_to(labels, cut, k) for cut in self.whitened_.cuts]
        self.centres_in_ = [centres_of(space(points), cut, k) for space, cut in zip(self.spaces_, cuts)]
        self.centres_ = self.centres_in_[0]
        return self

    def place(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cluster most whitenings' nearest centres give, and how typical: the share of whitenings that agree,
        ties broken by the distance in the middle one's space."""
        placed = [nearest_centre(space(points), centres) for space, centres in zip(self.spaces_, self.centres_in_)]
        chosen = whitened_vote([nearest for nearest, _ in placed], self.n_clusters)  # typical where the cuts agree
        agreeing = np.mean([nearest == chosen for nearest, _ in placed], axis=0)
        return chosen, agreeing + 1e-3 * placed[1][1]

    def state(self) -> dict[str, np.ndarray]:
        arrays = {}
        for index, (space, centres) in enumerate(zip(self.spaces_, self.centres_in_)):
            arrays[f"centres_{index}"] = centres
            arrays |= {f"offset_{index}": space.offset, f"projection_{index}": space.projection}
        return arrays

    @classmethod
    def _from_state(cls, arrays: dict[str, np.ndarray], seed: int) -> Clusterer:
        clusterer = cls(len(arrays["centres_0"]), seed=seed)
        clusterer.spaces_, clusterer.centres_in_, index = [], [], 0
        while f"centres_{index}" in arrays:
            clusterer.spaces_.append(Whitening(arrays[f"offset_{index}"], arrays[f"projection_{index}"]))
            clusterer.centres_in_.append(arrays[f"centres_{index}"])
            index += 1
        clusterer.centres_ = clusterer.centres_in_[0]
        return clusterer


# Every clusterer by the name settings give it (cluster.clusterer, --clusterer).
CLUSTERERS: dict[str, type[Clusterer]] = {
    kind.name: kind
    for kind in (
        KMeansClusterer, KMeansMergeClusterer, GaussianMixtureClusterer, AgglomerativeClusterer, WhitenedKMeans,
        AutoClusterer,
    )
}  # fmt: skip


def create_clusterer(name: str, n_clusters: int, seed: int = 0) -> Clusterer:
    """The clusterer ``name`` (:data:`CLUSTERERS`), unfitted; an unknown name is refused with the known ones."""
    if name not in CLUSTERERS:
        raise unknown_name("clusterer", name, list(CLUSTERERS))
    return CLUSTERERS[name](n_clusters, seed=seed)


def cluster(points: np.ndarray, k: int, method: str = "kmeans", seed: int = 0) -> np.ndarray:
    """Assign each row of ``points`` to one of ``k`` clusters, numbered 0..k-1."""
    clusterer = create_clusterer(method, k, seed)
    check_k(k, len(points))
    return clusterer.cut(points).astype(np.int64)
