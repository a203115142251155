"""SCAN's refinement on fixed features: a k-way head trained on pairs of feature vectors, with no encoder to tune
and no augmented views to draw.

Where the features come from an encoder that stays as it is (one pretrained once, or embeddings computed anywhere),
only the head learns: each feature vector and one of its nearest neighbours must fall into the same cluster, a
balance term keeps every cluster in use (:func:`aeclust.nn.objectives.scan_loss`), and self-labelling then trains
the head towards the clusters' most confident members. A batch is a matrix product, so an epoch costs milliseconds
per thousand vectors where the image refinement encodes two views of every pair. No maintained library trains
SCAN's head on a matrix, hence the code here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aeclust.cluster.neighbours import nearest_neighbours
from aeclust.config import RefineConfig
from aeclust.errors import RunDirError
from aeclust.nn.objectives import NeighbourConsistencyObjective, SelfLabellingObjective
from aeclust.refine.scan import head_from_clusters, most_confident, neighbour_count, target_shares
from aeclust.runtime.engine import Engine
from aeclust.runtime.io import atomic_open
from aeclust.runtime.loop import run_epoch


def unit_rows(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Rows at unit length, as float32 on the CPU: the head compares directions, as SCAN's does."""
    return F.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float32), dim=1)


class FeatureRefiner:
    """Refines ``k`` clusters of fixed features as ``settings`` (a run's ``refine`` section) say: ``epochs`` of
    neighbour consistency, then ``self_label_epochs`` of self-labelling; ``balance`` ("uniform" or "prior") holds the
    cluster sizes; ``seed`` draws every random number.

    After :meth:`fit`: ``labels_`` (each fitted vector's cluster), ``n_clusters_``, ``head_`` (the k-way linear head
    on unit-length features), ``neighbours_`` and ``losses_`` (per epoch); :meth:`predict` places other vectors by the
    head. ``k`` None: as many clusters as the initial clusters number.
    """

    def __init__(
        self,
        settings: RefineConfig,
        *,
        k: int | None = None,
        balance: str = "uniform",
        seed: int = 0,
        engine: Engine | None = None,
    ) -> None:
        self.settings, self.k, self.balance, self.seed = settings, k, balance, seed
        self.engine = engine if engine is not None else Engine(torch.device("cpu"))

    def fit(
        self, features: np.ndarray, initial_clusters: np.ndarray, log: Callable[[str], None] | None = None
    ) -> FeatureRefiner:
        if len(initial_clusters) != len(features):
            raise ValueError(
                f"{len(initial_clusters)} initial cluster labels for {len(features)} feature vectors; expected one each"
            )
        settings = self.settings
        initial_clusters = np.asarray(initial_clusters)
        k = self.n_clusters_ = self.k if self.k is not None else int(initial_clusters.max()) + 1
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        points = unit_rows(features)
        limit = settings.exact_search_limit
        self.neighbours_ = nearest_neighbours(
            points, neighbour_count(settings.neighbours, len(points), k), self.engine,
            exact_limit=None if limit is None else int(limit),
        )  # fmt: skip
        self.head_ = head_from_clusters(points, initial_clusters, k)
        shares = target_shares(initial_clusters, k, self.balance)
        consistency = NeighbourConsistencyObjective(settings.entropy_weight, shares)
        optimizer = torch.optim.Adam(self.head_.parameters(), lr=settings.head_lr)
        self.losses_ = []
        for epoch in range(settings.total_epochs):
            self.head_.train()
            if epoch < settings.epochs:
                loss = self._consistency_epoch(points, consistency, optimizer, generator)
                what = f"neighbour consistency {epoch + 1}/{settings.epochs}"
            else:
                loss = self._self_label_epoch(points, shares, optimizer, generator)
                what = f"self-labelling {epoch + 1 - settings.epochs}/{settings.self_label_epochs}"
            self.losses_.append(loss)
            if log is not None:
                log(f"refine head {what}  loss {loss:.4f}")
        self.labels_ = self.predict(points)
        return self

    def _consistency_epoch(
        self,
        points: torch.Tensor,
        consistency: NeighbourConsistencyObjective,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> float:
        settings = self.settings
        order = torch.randperm(len(points), generator=generator)[: settings.anchors_per_epoch]

        def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for start in range(0, len(order), settings.batch_size):
                anchors = order[start : start + settings.batch_size]
                picked = torch.randint(0, self.neighbours_.shape[1], (len(anchors),), generator=generator)
                yield anchors, self.neighbours_[anchors, picked]

        def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
            anchors, partners = batch
            return consistency(self.head_(points[anchors]), self.head_(points[partners])), len(anchors), {}

        return run_epoch(pairs(), step, optimizer, self.engine, description="refine head").loss

    def _self_label_epoch(
        self,
        points: torch.Tensor,
        shares: torch.Tensor | None,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> float:
        """Cross-entropy towards each cluster's most confident ``confident_share`` of the vectors."""
        with torch.no_grad():
            chosen, targets = most_confident(self.head_(points).softmax(1), self.settings.confident_share)
        objective = SelfLabellingObjective(torch.bincount(targets, minlength=self.n_clusters_), shares)
        order = torch.randperm(len(chosen), generator=generator)[: self.settings.anchors_per_epoch]
        size = self.settings.batch_size
        batches = (order[start : start + size] for start in range(0, len(order), size))

        def step(picked: torch.Tensor) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
            return objective(self.head_(points[chosen[picked]]), targets[picked]), len(picked), {}

        return run_epoch(batches, step, optimizer, self.engine, description="self-label head").loss

    @torch.inference_mode()
    def predict_proba(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.head_.eval()(unit_rows(features)).softmax(1).numpy()

    def predict(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.predict_proba(features).argmax(1).astype(np.int64)

    def save(self, path: Path) -> None:
        """The head's weights as a .npz of plain arrays, written atomically."""
        state = {name: value.detach().numpy() for name, value in self.head_.state_dict().items()}
        with atomic_open(path, "wb") as handle:
            np.savez(handle, **state)

    @classmethod
    def load(cls, path: Path, settings: RefineConfig | None = None) -> FeatureRefiner:
        """A refiner able to :meth:`predict`, from what :meth:`save` wrote; or one line naming the file."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                weight, bias = torch.from_numpy(saved["weight"]), torch.from_numpy(saved["bias"])
        except (OSError, ValueError, KeyError) as error:
            raise RunDirError(f"{path}: expected a refined cluster head, could not read it ({error})") from None
        refiner = cls(settings or RefineConfig(), k=len(bias))
        refiner.n_clusters_ = len(bias)
        refiner.head_ = torch.nn.Linear(weight.shape[1], len(bias))
        refiner.head_.load_state_dict({"weight": weight, "bias": bias})
        return refiner
