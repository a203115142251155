"""Nearest-neighbour search: exact block by block, and faiss's approximate index against it."""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import aeclust.cluster.neighbours
from aeclust.cluster.neighbours import nearest_neighbours
from aeclust.errors import ConfigError


def unit_rows(n: int, d: int = 5, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def grouped_points(n: int = 3000, d: int = 32, groups: int = 30, seed: int = 0) -> np.ndarray:
    """Unit-length points around ``groups`` centres: neighbourhoods like a trained encoder's."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, d))
    points = centres[rng.integers(0, groups, n)] + 0.5 * rng.normal(size=(n, d))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found.tolist(), exact.tolist())]))


def test_exact_search_matches_brute_force_across_blocks(monkeypatch):
    monkeypatch.setattr(aeclust.cluster.neighbours, "BLOCK", 7)  # several blocks, the last one short
    features = unit_rows(30)
    found = nearest_neighbours(features, 4)
    similarity = features @ features.T
    similarity.fill_diagonal_(-2)
    assert torch.equal(found, similarity.topk(4, dim=1).indices)
    assert not (found == torch.arange(30)[:, None]).any()  # nobody is their own neighbour


def test_exact_euclidean_search_ranks_by_distance(monkeypatch):
    monkeypatch.setattr(aeclust.cluster.neighbours, "BLOCK", 8)
    points = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32) * [1, 5, 20]
    found = nearest_neighbours(points, 3, metric="euclidean")
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert np.array_equal(found.numpy(), np.argsort(distances, axis=1, kind="stable")[:, :3])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_approximate_index_finds_most_true_neighbours_never_oneself_and_the_same_each_time(metric):
    points = grouped_points()
    if metric == "euclidean":
        points = points * np.random.default_rng(2).uniform(1, 3, (len(points), 1)).astype(np.float32)
    exact = nearest_neighbours(points, 10, metric=metric)
    approximate = nearest_neighbours(points, 10, metric=metric, exact_limit=1000)  # 3,000 points: above the limit
    assert approximate.shape == (3000, 10) and approximate.dtype == torch.int64
    assert not (approximate == torch.arange(3000)[:, None]).any()
    assert recall(approximate, exact) > 0.9
    assert torch.equal(approximate, nearest_neighbours(points, 10, metric=metric, exact_limit=1000))


def test_the_index_searches_only_the_cells_it_probes(monkeypatch):
    points = unit_rows(3000, d=8).numpy()  # no groups: many a point's neighbours lie in the cells next to its own
    exact = nearest_neighbours(points, 10)
    monkeypatch.setattr(aeclust.cluster.neighbours, "PROBES", 1)
    assert 0.2 < recall(nearest_neighbours(points, 10, exact_limit=1000), exact) < 0.9


def test_without_faiss_a_large_search_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ConfigError, match="pip install faiss-cpu"):
        nearest_neighbours(grouped_points(200), 5, exact_limit=100)


def test_an_unknown_metric_is_refused():
    with pytest.raises(ConfigError, match="unknown neighbour metric 'manhattan'"):
        nearest_neighbours(unit_rows(10), 3, metric="manhattan")


def test_on_a_gpu_the_index_moves_to_it_where_faiss_is_its_gpu_build(monkeypatch):
    """faiss-cpu has no GPU resources, so this stands them in: the index built on the CPU goes to the GPU asked for,
    and without a GPU build the search stays on the CPU, with the same answer."""
    import faiss

    points = grouped_points(600)
    on_cpu = aeclust.cluster.neighbours.approximate_neighbours(points, 5, slice(0, 600), "cosine", gpu=0)
    moved = []
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: "resources", raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2, raising=False)
    to_gpu = lambda resources, gpu, index: moved.append((resources, gpu)) or index  # noqa: E731
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    on_gpu = aeclust.cluster.neighbours.approximate_neighbours(points, 5, slice(0, 600), "cosine", gpu=1)
    assert moved == [("resources", 1)] and torch.equal(on_gpu, on_cpu)
    aeclust.cluster.neighbours.approximate_neighbours(points, 5, slice(0, 600), "cosine", gpu=None)
    assert len(moved) == 1
