"""Refine the clusters by neighbour consistency (SCAN), after the clustering stage has found them.

SCAN (Van Gansbeke et al., 2020) trains a copy of the encoder and a k-way head so that an image and one of its
nearest neighbours in latent space, each augmented, fall into the same cluster, while an entropy term keeps every
cluster in use. Here the head starts at the centroids of the clustering stage's clusters, so refinement begins
from that answer and moves only images whose neighbourhoods disagree with it. Labels are never used; val images
are only predicted, never trained on. The autoencoder itself is left as trained, so reconstructions and MSE are
the autoencoder's. No maintained library does this for a torch model on a CPU, hence the code here.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aeclust.cluster.neighbours import nearest_neighbours
from aeclust.config import ModelConfig, RefineConfig, RunConfig
from aeclust.data import ImageSet
from aeclust.data.batches import read_batches
from aeclust.errors import unknown_name
from aeclust.format_version import FORMAT_VERSION
from aeclust.nn.augment import contrastive_view
from aeclust.nn.objectives import NeighbourConsistencyObjective, SelfLabellingObjective
from aeclust.nn.objectives.views import channels_last
from aeclust.refine.records import REFINE_CHECKPOINT, REFINE_KIND
from aeclust.runtime.engine import Engine, start_engine
from aeclust.runtime.infer import infer, pooled_unit_latents
from aeclust.runtime.io import load_checked, torch_save_atomic
from aeclust.runtime.loop import run_epoch, shard_batches, share_of_batch

HEAD_SCALE = 10.0  # the head's logits start as 10 × cosine to each centroid: confident, not saturated


def neighbour_count(configured: int, images: int, k: int) -> int:
    """How many nearest neighbours each image may be paired with: the configured number, but at most a quarter of
    an average cluster, so that with many small clusters an image's neighbours still come mostly from its own."""
    return max(1, min(configured, images // (4 * k)))


def head_from_clusters(features: torch.Tensor, clusters: np.ndarray, k: int) -> nn.Linear:
    """A linear k-way head whose logits are scaled cosines to each cluster's centroid."""
    head = nn.Linear(features.shape[1], k)
    assignment = torch.from_numpy(np.asarray(clusters))
    with torch.no_grad():
        # An empty cluster (possible with some clusterers) gets a zero centroid: logit 0 until training moves it.
        centroids = torch.stack(
            [
                features[assignment == c].mean(0) if (assignment == c).any() else features.new_zeros(features.shape[1])
                for c in range(k)
            ]
        )
        head.weight.copy_(F.normalize(centroids, dim=1) * HEAD_SCALE)
        head.bias.zero_()
    return head


def target_shares(clusters: np.ndarray, k: int, balance: str) -> torch.Tensor | None:
    """The cluster sizes refinement holds the clusters to, as shares: None for SCAN's uniform pull (``"uniform"``),
    else (``"prior"``) the clustering stage's own sizes, smoothed by one image each so no target is zero."""
    if balance == "uniform":
        return None
    if balance != "prior":
        raise unknown_name("refine balance", balance, ["uniform", "prior"])
    counts = np.bincount(np.asarray(clusters), minlength=k).astype(np.float64) + 1.0
    return torch.from_numpy(counts / counts.sum()).float()


BALANCES = ("uniform", "prior", "auto")


def resolve_balance(balance: str, clusterer: str) -> str:
    """"auto" keeps the sizes of clusters that kmeans-merge found (it is taken only where groups look uneven) and
    pulls k-means' clusters to equal sizes as SCAN does; any other balance stands as it is."""
    if balance != "auto":
        return balance
    return "prior" if clusterer == "kmeans-merge" else "uniform"


@dataclass
class Refinement:
    train_clusters: np.ndarray
    train_features: np.ndarray  # the refined encoder's pooled unit latents
    val_clusters: np.ndarray | None = None
    val_features: np.ndarray | None = None


def most_confident(probabilities: torch.Tensor, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows each cluster holds most confidently (its ``share`` of the rows it takes, by their probability under
    it), and their clusters, in row order: self-labelling's targets."""
    confidence, clusters = probabilities.max(1)
    chosen = []
    for cluster in range(probabilities.shape[1]):
        members = (clusters == cluster).nonzero().squeeze(1)
        keep = math.ceil(len(members) * share)
        chosen.append(members[confidence[members].argsort(descending=True, stable=True)[:keep]])
    chosen = torch.cat(chosen).sort().values
    return chosen, clusters[chosen]


def pair_logits(
    module: nn.Module, views: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cluster logits of a neighbour-consistency batch (its anchors' pixels, then their partners', in one tensor):
    each half's views drawn in turn, both encoded in one pass. The refinement's step, and what a budget times."""
    anchors = len(pixels) // 2
    logits = module(torch.cat([views(pixels[:anchors]), views(pixels[anchors:])]))
    return logits[:anchors], logits[anchors:]


class ClusterModel(nn.Module):
    """A copy of the trained autoencoder's encoder and a k-way head on its pooled unit latents: calling it on a
    batch of views gives their cluster logits. The decoder comes along in the copy but takes no part."""

    def __init__(self, autoencoder: nn.Module, head: nn.Linear | None = None) -> None:
        super().__init__()
        self.autoencoder, self.head = copy.deepcopy(autoencoder), head
        self.autoencoder.decoder.requires_grad_(False)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(images)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_unit_latents(self.autoencoder.encode(channels_last(views))))


class NeighbourRefiner:
    """Fine-tunes a copy of ``model``'s encoder and a ``k``-way head on ``images.train_images``, from the clustering
    stage's ``initial_clusters``, as ``settings`` (a run's ``refine`` section) say. Views are augmented as ``views``
    (the model's settings) made its contrastive views; ``balance`` ("uniform" or "prior": :func:`resolve_balance`)
    says which sizes the clusters are held to; ``seed`` draws every random number.

    With a ``directory``, its refinement checkpoint is written after each epoch and :meth:`resume` continues from it;
    ``trained_epochs`` (how long the autoencoder had trained) tells a stale checkpoint from a current one. Under
    torchrun (``engine`` distributed) every process makes a refiner with the same ``initial_clusters``; each trains
    on its share of every batch and only the main one writes.
    """

    def __init__(
        self,
        model: nn.Module,
        images: ImageSet,
        settings: RefineConfig,
        initial_clusters: np.ndarray,
        *,
        k: int,
        views: ModelConfig,
        balance: str = "uniform",
        seed: int = 0,
        directory: Path | None = None,
        trained_epochs: int = 0,
        engine: Engine | None = None,
    ) -> None:
        self.settings, self.images, self.trained_epochs = settings, images, trained_epochs
        self.engine = engine if engine is not None else start_engine("auto")
        self.checkpoint_path = None if directory is None else Path(directory) / REFINE_CHECKPOINT
        torch.manual_seed(seed)
        self.cluster_model = ClusterModel(model).to(self.engine.device, memory_format=torch.channels_last)
        # Seconds spent in each part, over the refinement: encoding, neighbour mining, the epochs themselves.
        self.seconds = {"encode": 0.0, "neighbours": 0.0, "epochs": 0.0}
        features = self.encode_pooled(images.train_images)
        self.neighbour_count = neighbour_count(self.settings.neighbours, len(features), k)
        self.neighbours = self.find_neighbours(features)
        self.target_shares = target_shares(initial_clusters, k, balance)
        self.cluster_model.head = head_from_clusters(features, initial_clusters, k)
        self.training_module = self.engine.prepare(self.cluster_model)
        self.model, self.head = self.cluster_model.autoencoder, self.cluster_model.head
        self.consistency = NeighbourConsistencyObjective(self.settings.entropy_weight, self.target_shares, self.engine)
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.model.parameters(), "lr": self.settings.lr},
                {"params": self.head.parameters(), "lr": self.settings.head_lr},
            ],
            fused=self.engine.fused_optimizer,
        )
        self.scaler = self.engine.grad_scaler()
        # As in training: one generator for everything in one process; under torchrun it draws what every process
        # must agree on (anchors, partners) and each process draws its views from its own.
        self.generator = torch.Generator().manual_seed(seed)
        self.view_generator = self.engine.view_generator(self.generator, seed)
        self.view_config = views
        self.epoch = 0

    def state(self) -> dict:
        state = {
            "kind": REFINE_KIND,
            "format_version": FORMAT_VERSION,
            "epoch": self.epoch,
            "trained_epochs": self.trained_epochs,
            "model": self.model.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        } | self.engine.process_state(self.view_generator)
        return state

    def resume(self) -> bool:
        """Continue from this run's refinement checkpoint, if one was written for this model; return whether so.

        A checkpoint written after fewer training epochs (the run was since trained further) is started afresh.
        """
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        state = load_checked(self.checkpoint_path, REFINE_KIND, "an aeclust refinement checkpoint")
        if state.get("trained_epochs") != self.trained_epochs:
            return False
        self.engine.restore_processes(self.checkpoint_path, state, self.view_generator)
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epoch = state["epoch"]
        if self.settings.remine_neighbours and 0 < self.epoch < self.settings.epochs:
            self.mine_neighbours()  # as the interrupted run did after this epoch: they come from the model alone
        return True

    def encode_pooled(self, images: np.ndarray) -> torch.Tensor:
        """The refining encoder's pooled unit latents of ``images``."""
        started = time.perf_counter()
        pooled = infer(self.cluster_model, images, ("pooled",), engine=self.engine).pooled
        self.seconds["encode"] += time.perf_counter() - started
        return pooled

    def find_neighbours(self, features: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        limit = self.settings.exact_search_limit
        neighbours = nearest_neighbours(
            features, self.neighbour_count, self.engine, exact_limit=None if limit is None else int(limit)
        )
        self.seconds["neighbours"] += time.perf_counter() - started
        return neighbours

    def mine_neighbours(self) -> None:
        """Each image's nearest neighbours in the refining encoder's pooled, unit-length latent space."""
        self.neighbours = self.find_neighbours(self.encode_pooled(self.images.train_images))

    def views(self, pixels: torch.Tensor) -> torch.Tensor:
        return contrastive_view(self.engine.images_to_device(pixels), self.view_generator, self.view_config)

    def read(self, batches: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Each batch of train-image indices with its images, read in this process, as each batch is reached.

        Not by worker processes, unlike training: a neighbour-consistency batch's partners are drawn from the
        generator the views are drawn from, as the batch is reached, and workers would draw them all first (other
        partners, other views). An epoch reads at most twice ``anchors_per_epoch`` images, whatever N is.
        """
        return read_batches(self.images.train_images, batches)

    def train_one_epoch(self) -> tuple[float, list[int]]:
        """One pass over the images as anchors; the mean loss and how many anchors each cluster took, as it went."""
        self.cluster_model.train()
        sizes = torch.zeros(self.head.out_features, dtype=torch.long)
        images = len(self.images.train_images)
        order = torch.randperm(images, generator=self.generator)[: self.settings.anchors_per_epoch]

        def pairs() -> Iterator[torch.Tensor]:
            """Each batch's anchors, then their partners, in one index tensor (one read)."""
            for start in range(0, len(order), self.settings.batch_size):
                anchors = order[start : start + self.settings.batch_size]
                # Drawn for the whole batch by every process alike, then split: the same pairs as in one process.
                picked = torch.randint(0, self.neighbours.shape[1], (len(anchors),), generator=self.generator)
                pairs = share_of_batch(torch.stack([anchors, self.neighbours[anchors, picked]], dim=1), self.engine)
                if pairs is not None:
                    yield torch.cat([pairs[:, 0], pairs[:, 1]])

        def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
            anchor_logits, partner_logits = pair_logits(self.training_module, self.views, batch[1])
            sizes.add_(torch.bincount(anchor_logits.argmax(1).cpu(), minlength=len(sizes)))
            return self.consistency(anchor_logits, partner_logits), len(anchor_logits), {}

        totals = run_epoch(
            self.read(pairs()), step, self.optimizer, self.engine, scaler=self.scaler, description="refine"
        )
        self.engine.sync_buffers(self.cluster_model)
        return totals.loss, self.engine.sum_counts(sizes).tolist()

    @torch.no_grad()  # not inference_mode: the targets it returns take part in a loss that is backpropagated
    def confident_assignments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the train images each cluster holds most confidently (its ``confident_share`` of them, by the
        head's probability), and their clusters, in index order."""
        probabilities = infer(
            self.cluster_model, self.images.train_images, ("probabilities",), head=self.head, engine=self.engine
        ).probabilities
        return most_confident(probabilities, self.settings.confident_share)

    def self_label_one_epoch(self) -> tuple[float, list[int]]:
        """Cross-entropy towards the confidently held clusters, on strongly augmented views; the mean loss and how
        many confident images each cluster has."""
        chosen, targets = self.confident_assignments()
        sizes = torch.bincount(targets, minlength=self.head.out_features)
        objective = SelfLabellingObjective(sizes, self.target_shares)
        self.cluster_model.train()
        order = torch.randperm(len(chosen), generator=self.generator)[: self.settings.anchors_per_epoch]

        def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
            indices, pixels = batch
            logits = self.training_module(self.views(pixels))
            picked_targets = targets[torch.searchsorted(chosen, indices)]  # chosen is sorted
            return objective(logits, picked_targets.to(logits.device)), len(indices), {}

        batches = (chosen[picked] for picked in shard_batches(order, self.settings.batch_size, self.engine))
        totals = run_epoch(
            self.read(batches), step, self.optimizer, self.engine, scaler=self.scaler, description="self-label"
        )
        self.engine.sync_buffers(self.cluster_model)
        return totals.loss, sizes.tolist()

    def fit(self, log: Callable[[str], None] = print, until: int | None = None) -> Refinement:
        """Train to the configured number of epochs (or to epoch ``until``), then predict every image."""
        scan_epochs, total_epochs = self.settings.epochs, self.settings.total_epochs
        until = total_epochs if until is None else min(until, total_epochs)
        while self.epoch < until:
            started = time.perf_counter()
            if self.epoch < scan_epochs:
                loss, sizes = self.train_one_epoch()
                what = f"neighbour consistency {self.epoch + 1}/{scan_epochs}  loss {loss:.4f}  cluster sizes {sizes}"
            else:
                loss, sizes = self.self_label_one_epoch()
                what = (
                    f"self-labelling {self.epoch + 1 - scan_epochs}/{total_epochs - scan_epochs}  loss {loss:.4f}  "
                    f"confident per cluster {sizes} of {len(self.images.train_images)}"
                )
            self.epoch += 1
            self.seconds["epochs"] += time.perf_counter() - started
            if self.settings.remine_neighbours and self.epoch < scan_epochs:
                self.mine_neighbours()
            if self.checkpoint_path is not None:
                state = self.state()  # a collective under torchrun: every process takes part, one writes
                if self.engine.is_main:
                    torch_save_atomic(self.checkpoint_path, state)
            if self.engine.is_main:
                log(f"refine {what}  ({time.perf_counter() - started:.0f}s)")
        return self.result()

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Other images' clusters by the refined encoder and head (the run's val images, or new ones)."""
        probabilities = infer(
            self.cluster_model, images, ("probabilities",), head=self.head, engine=self.engine
        ).probabilities
        return probabilities.argmax(1).numpy().astype(np.int64)

    @torch.inference_mode()
    def result(self) -> Refinement:
        """Every train (and val) image's cluster by the refined head, and the refined encoder's features."""
        train_features = self.encode_pooled(self.images.train_images)
        head = self.head.eval()
        refinement = Refinement(
            head(train_features.to(self.engine.device)).argmax(1).cpu().numpy(), train_features.numpy()
        )
        if self.images.has_val:
            val_features = self.encode_pooled(self.images.val_images)
            refinement.val_clusters = head(val_features.to(self.engine.device)).argmax(1).cpu().numpy()
            refinement.val_features = val_features.numpy()
        return refinement


def load_refined(directory: Path, autoencoder: nn.Module, epochs: int) -> ClusterModel | None:
    """The refined encoder and cluster head a refinement of ``epochs`` epochs left in ``directory`` (a copy of
    ``autoencoder`` with the refined weights), in eval mode; None when there is no refinement checkpoint or it stopped
    before its last epoch (its run's clusters are then the clustering stage's, not this head's)."""
    path = Path(directory) / REFINE_CHECKPOINT
    if not path.is_file():
        return None
    state = load_checked(path, REFINE_KIND, "an aeclust refinement checkpoint")
    if state["epoch"] < epochs:
        return None
    head = nn.Linear(state["head"]["weight"].shape[1], state["head"]["weight"].shape[0])
    refined = ClusterModel(autoencoder, head)
    refined.autoencoder.load_state_dict(state["model"])
    head.load_state_dict(state["head"])
    return refined.eval()


def refine_clusters(
    model: nn.Module,
    images: ImageSet,
    config: RunConfig,
    initial_clusters: np.ndarray,
    log: Callable[[str], None] = print,
) -> Refinement:
    """Refine a clustering of ``images.train_images`` as ``config.refine`` says, outside any run directory.

    The notebook entry point: ``model`` is a trained autoencoder (for example from ``aeclust.load_model``),
    ``initial_clusters`` the clustering stage's answer for the train images. Nothing is written to disk; ``model``
    itself is left unchanged.
    """
    if len(initial_clusters) != len(images.train_images):
        raise ValueError(
            f"{len(initial_clusters)} initial cluster labels for {len(images.train_images)} train images; "
            "expected one label per train image"
        )
    return refiner_for(model, images, config, initial_clusters).fit(log)


def refiner_for(
    model: nn.Module,
    images: ImageSet,
    config: RunConfig,
    initial_clusters: np.ndarray,
    directory: Path | None = None,
    trained_epochs: int = 0,
    engine: Engine | None = None,
) -> NeighbourRefiner:
    """The refiner of a run's ``config``: its refine section, its k, its model's views, its seed, and the sizes its
    clusterer's clusters are held to."""
    return NeighbourRefiner(
        model, images, config.refine, initial_clusters, k=config.cluster.k, views=config.model,
        balance=resolve_balance(config.refine.balance, config.cluster.clusterer), seed=config.seed,
        directory=directory, trained_epochs=trained_epochs,
        engine=engine if engine is not None else start_engine(config.device),
    )  # fmt: skip
