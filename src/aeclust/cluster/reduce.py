"""Latents → fewer dimensions (reducers) → 2-D (embedders), each chosen by name."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.decomposition import PCA, KernelPCA
from sklearn.kernel_approximation import Nystroem

from aeclust.config import ClusterConfig
from aeclust.errors import unknown_name


def _none(features: np.ndarray, config: ClusterConfig, seed: int) -> np.ndarray:
    return features


def _pca(features: np.ndarray, config: ClusterConfig, seed: int) -> np.ndarray:
    components = min(config.components, *features.shape)
    return PCA(n_components=components, random_state=seed).fit_transform(features)


# Above this many points the exact N×N kernel (8 bytes a cell: 0.8 GB at 10k, 20 GB at 50k) gives way to Nyström.
EXACT_KPCA_MAX_POINTS = 10_000
NYSTROEM_LANDMARKS = 2_000


def _kpca(features: np.ndarray, config: ClusterConfig, seed: int) -> np.ndarray:
    components = min(config.components, features.shape[0] - 1)
    if len(features) > EXACT_KPCA_MAX_POINTS:
        return _nystroem_kpca(features, config, components, seed)
    # arpack is exact and deterministic for a given seed; scikit-learn's 'auto' may pick it anyway.
    kpca = KernelPCA(
        n_components=components,
        kernel="rbf",
        gamma=config.kpca_gamma,
        eigen_solver="randomized" if len(features) > 3000 else "arpack",
        random_state=seed,
    )
    return kpca.fit_transform(features)


def _nystroem_kpca(features: np.ndarray, config: ClusterConfig, components: int, seed: int) -> np.ndarray:
    """Kernel PCA through a Nyström feature map on random landmarks, then linear PCA: linear in N."""
    gamma = config.kpca_gamma if config.kpca_gamma is not None else 1.0 / features.shape[1]
    landmarks = min(NYSTROEM_LANDMARKS, len(features))
    mapped = Nystroem(kernel="rbf", gamma=gamma, n_components=landmarks, random_state=seed).fit_transform(features)
    return PCA(n_components=min(components, landmarks), random_state=seed).fit_transform(mapped)


def whitening(components: int, features: np.ndarray, seed: int) -> PCA:
    """The (unfitted) projection on ``features``' first ``components`` principal components at unit variance."""
    return PCA(n_components=min(components, *features.shape), whiten=True, random_state=seed)


def whiten(features: np.ndarray, components: int, seed: int = 0) -> np.ndarray:
    """``features`` whitened to ``components`` dimensions (:func:`whitening`)."""
    return whitening(components, features, seed).fit_transform(features).astype(np.float32)


REDUCERS: dict[str, Callable[[np.ndarray, ClusterConfig, int], np.ndarray]] = {
    "none": _none,
    "pca": _pca,
    "kpca": _kpca,
}


def _tsne(features: np.ndarray, config: ClusterConfig, seed: int) -> np.ndarray:
    from openTSNE import TSNE

    perplexity = min(config.perplexity, max(2.0, (len(features) - 1) / 3))
    # Barnes-Hut is faster than the FFT interpolation below about ten thousand points.
    method = "fft" if len(features) > 10_000 else "bh"
    tsne = TSNE(
        n_components=2, perplexity=perplexity, negative_gradient_method=method, random_state=seed, n_jobs=1, verbose=False
    )
    return np.asarray(tsne.fit(features.astype(np.float64)))


def _sklearn_tsne(features: np.ndarray, config: ClusterConfig, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = min(config.perplexity, max(2.0, (len(features) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, random_state=seed).fit_transform(features)


def _umap(features: np.ndarray, config: ClusterConfig, seed: int) -> np.ndarray:
    import umap

    neighbours = int(min(15, len(features) - 1))
    return umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed, n_jobs=1).fit_transform(features)


EMBEDDERS: dict[str, Callable[[np.ndarray, ClusterConfig, int], np.ndarray]] = {
    "none": _none,
    "tsne": _tsne,  # openTSNE: FFT-accelerated, linear in N
    "sklearn-tsne": _sklearn_tsne,  # the study's t-SNE
    "umap": _umap,
}


def reduce(features: np.ndarray, config: ClusterConfig, seed: int = 0) -> np.ndarray:
    if config.reducer not in REDUCERS:
        raise unknown_name("reducer", config.reducer, list(REDUCERS))
    return REDUCERS[config.reducer](features, config, seed)


def embed_2d(features: np.ndarray, config: ClusterConfig, seed: int = 0) -> np.ndarray:
    if config.embedder not in EMBEDDERS:
        raise unknown_name("embedder", config.embedder, list(EMBEDDERS))
    return EMBEDDERS[config.embedder](features, config, seed)
