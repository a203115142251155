"""Each point's nearest others: exact up to a size, approximate (a faiss inverted-file index) above it.

Exact search holds one block of the similarity matrix at a time, so its memory is bounded, but its time grows with
N²: 50,000 points take seconds, a million hours on a CPU. Above ``exact_limit`` points a faiss IVF index takes
over: the points are split into about 4·√N cells by k-means and each query looks only into its ``probes`` nearest
cells. IVF rather than a graph index (HNSW) because it is built the same way every time, so the same seed still
gives the same clusters. ``bench/scale.py`` measures its recall against exact search.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from aeclust.errors import ConfigError
from aeclust.runtime.engine import Engine
from aeclust.runtime.progress import Progress

BLOCK = 2048  # rows of the similarity matrix held at once: 2048 × 50,000 floats is 400 MB
# Above this many points, search is approximate: exact search on a CPU would take minutes per pass (200,000 points
# of 128 numbers: about 5·10¹² multiply-adds), and the refinement searches again after each epoch. A GPU does the
# exact search of a million points in seconds.
EXACT_LIMIT_CPU = 100_000
EXACT_LIMIT_GPU = 2_000_000
CELLS_PER_ROOT = 4  # IVF cells: this many times √N
PROBES = 32  # cells each query looks into
TRAINING_POINTS_PER_CELL = 64  # the cells' k-means sees this many points per cell, at most
METRICS = ("cosine", "euclidean")


def nearest_neighbours(
    features: torch.Tensor | np.ndarray,
    k: int,
    engine: Engine | None = None,
    metric: str = "cosine",
    exact_limit: int | None = None,
) -> torch.Tensor:
    """Indices (N × k, int64, on the CPU) of each row's ``k`` nearest other rows.

    ``metric`` "cosine" expects unit-length rows (it ranks by dot product); "euclidean" ranks by distance. Under
    torchrun each process searches for its share of the rows and every process gets all of them back.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown neighbour metric {metric!r}; expected one of: {', '.join(METRICS)}")
    features = torch.as_tensor(features, dtype=torch.float32)
    k = min(k, len(features) - 1)
    rows = engine.shard(len(features)) if engine is not None else slice(0, len(features))
    device = engine.device if engine is not None else features.device
    if exact_limit is None:
        exact_limit = EXACT_LIMIT_GPU if device.type == "cuda" else EXACT_LIMIT_CPU
    if len(features) <= exact_limit:
        found = exact_neighbours(features.to(device), k, rows, metric)
    else:
        gpu = (device.index or 0) if device.type == "cuda" else None
        found = approximate_neighbours(features.cpu().numpy(), k, rows, metric, gpu).to(device)
    if engine is not None and engine.distributed:
        found = engine.gather(found.to(engine.collective_device))
    return found.cpu()


def exact_neighbours(points: torch.Tensor, k: int, rows: slice, metric: str) -> torch.Tensor:
    """Every pair compared, ``BLOCK`` query rows at a time."""
    squared_norms = (points * points).sum(1) if metric == "euclidean" else None
    blocks = []
    progress = Progress(rows.stop - rows.start, "neighbours", "image")
    for start in range(rows.start, rows.stop, BLOCK):
        similarity = points[start : min(start + BLOCK, rows.stop)] @ points.T
        if squared_norms is not None:  # −‖a − b‖² up to a constant per row: 2a·b − ‖b‖²
            similarity = 2 * similarity - squared_norms
        own = torch.arange(len(similarity), device=points.device)
        similarity[own, own + start] = -math.inf  # never one's own neighbour
        blocks.append(similarity.topk(k, dim=1).indices)
        progress.update(len(similarity))
    progress.close()
    return torch.cat(blocks) if blocks else torch.empty(0, k, dtype=torch.long, device=points.device)


def approximate_neighbours(
    points: np.ndarray, k: int, rows: slice, metric: str, gpu: int | None = None
) -> torch.Tensor:
    """A faiss IVF index over all points, searched for ``rows``; on GPU ``gpu`` where faiss is its GPU build."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            f"searching the neighbours of {len(points)} points needs faiss (pip install faiss-cpu), which is not "
            "installed"
        ) from None
    points = np.ascontiguousarray(points, dtype=np.float32)
    count, dimensions = points.shape
    cells = max(1, min(int(CELLS_PER_ROOT * math.sqrt(count)), count // 39))
    inner_product = metric == "cosine"
    quantizer = faiss.IndexFlatIP(dimensions) if inner_product else faiss.IndexFlatL2(dimensions)
    faiss_metric = faiss.METRIC_INNER_PRODUCT if inner_product else faiss.METRIC_L2
    index = faiss.IndexIVFFlat(quantizer, dimensions, cells, faiss_metric)
    # A fixed sample trains the cells, so the index (and the clusters after it) is the same on every run.
    sample = np.random.default_rng(0).permutation(count)[: cells * TRAINING_POINTS_PER_CELL]
    index.cp.seed = 0
    index.train(points[np.sort(sample)])
    if gpu is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > gpu:
        resources = faiss.StandardGpuResources()  # faiss-gpu only; faiss-cpu, from the registry, searches on the CPU
        index = faiss.index_cpu_to_gpu(resources, gpu, index)
    index.add(points)
    index.nprobe = min(PROBES, cells)
    queries = points[rows]
    found = np.empty((len(queries), k), dtype=np.int64)
    progress = Progress(len(queries), "neighbours (faiss)", "image")
    for start in range(0, len(queries), 65_536):
        _, candidates = index.search(queries[start : start + 65_536], k + 1)
        own = np.arange(start, start + len(candidates)) + rows.start
        # each row's own index, where the search found it, goes last and is cut off with the (k+1)-th
        last = np.argsort(candidates == own[:, None], axis=1, kind="stable")
        chosen = np.take_along_axis(candidates, last, axis=1)[:, :k]
        missing = chosen < 0  # fewer than k found in the cells probed: the nearest one found stands in
        chosen[missing] = np.broadcast_to(chosen[:, :1], chosen.shape)[missing]
        found[start : start + len(chosen)] = chosen
        progress.update(len(chosen))
    progress.close()
    return torch.from_numpy(found)
