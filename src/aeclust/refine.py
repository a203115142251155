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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aeclust.augment import contrastive_view
from aeclust.config import RunConfig
from aeclust.data import ImageSet
from aeclust.embed import INFERENCE_BATCH, to_model_input
from aeclust.errors import unknown_name
from aeclust.io import torch_save_atomic
from aeclust.rundir import FORMAT_VERSION, RunDir, load_checked

REFINE_KIND = "aeclust-refine-checkpoint"
NEIGHBOUR_BLOCK = 2048  # rows of the similarity matrix held at once: 2048 × 50,000 floats is 400 MB
HEAD_SCALE = 10.0  # the head's logits start as 10 × cosine to each centroid: confident, not saturated


def pooled_unit_latents(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Globally pooled, unit-length latents: the space neighbours are found in and the head reads."""
    return F.normalize(model.encode(inputs.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3)), dim=1)


@torch.inference_mode()
def encode_pooled(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Pooled unit latents of all ``inputs``, in eval mode and large batches."""
    was_training = model.training
    model.eval()
    try:
        outputs = [
            pooled_unit_latents(model, inputs[start : start + INFERENCE_BATCH])
            for start in range(0, len(inputs), INFERENCE_BATCH)
        ]
    finally:
        model.train(was_training)
    return torch.cat(outputs)


def nearest_neighbours(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row's ``k`` most cosine-similar other rows (rows are unit length), block by block."""
    k = min(k, len(features) - 1)
    blocks = []
    for start in range(0, len(features), NEIGHBOUR_BLOCK):
        similarity = features[start : start + NEIGHBOUR_BLOCK] @ features.T
        rows = torch.arange(len(similarity))
        similarity[rows, rows + start] = -2.0  # never one's own neighbour
        blocks.append(similarity.topk(k, dim=1).indices)
    return torch.cat(blocks)


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


def scan_loss(
    anchor_logits: torch.Tensor,
    partner_logits: torch.Tensor,
    entropy_weight: float,
    target_shares: torch.Tensor | None = None,
) -> torch.Tensor:
    """−log ⟨p(anchor), p(neighbour)⟩, plus a balance term on the batch's mean cluster share.

    Without ``target_shares`` the balance term is SCAN's: minus entropy_weight × the entropy of the mean share,
    which is smallest when every cluster takes 1/k of the images. With them it is entropy_weight × KL(mean share ‖
    target): it keeps every cluster in use just as well, but holds the clusters at the target's (possibly uneven)
    sizes instead of pulling them all towards 1/k. With uniform targets the two differ only by the constant log k.
    """
    anchor, partner = anchor_logits.softmax(1), partner_logits.softmax(1)
    consistency = -torch.log((anchor * partner).sum(1).clamp_min(1e-8)).mean()
    share = anchor.mean(0)
    entropy = -(share * torch.log(share.clamp_min(1e-8))).sum()
    if target_shares is None:
        return consistency - entropy_weight * entropy
    cross_entropy = -(share * torch.log(target_shares)).sum()
    return consistency + entropy_weight * (cross_entropy - entropy)


def target_shares(clusters: np.ndarray, k: int, balance: str) -> torch.Tensor | None:
    """The cluster sizes refinement holds the clusters to, as shares: None for SCAN's uniform pull (``"uniform"``),
    else (``"prior"``) the clustering stage's own sizes, smoothed by one image each so no target is zero."""
    if balance == "uniform":
        return None
    if balance != "prior":
        raise unknown_name("refine balance", balance, list(BALANCES))
    counts = np.bincount(np.asarray(clusters), minlength=k).astype(np.float64) + 1.0
    return torch.from_numpy(counts / counts.sum()).float()


BALANCES = ("uniform", "prior")


def self_label_weights(sizes: torch.Tensor, target_shares: torch.Tensor | None) -> torch.Tensor:
    """Per-cluster weights of the self-labelling loss: each cluster's target share (1/k without targets) over its
    share of the confident images, so a cluster holding more than its share weighs less; 0 for an empty one."""
    wanted = torch.full((len(sizes),), 1 / len(sizes)) if target_shares is None else target_shares
    return torch.where(sizes > 0, wanted * sizes.sum() / sizes.clamp_min(1), 0.0).float()


@dataclass
class Refinement:
    train_clusters: np.ndarray
    train_features: np.ndarray  # the refined encoder's pooled unit latents
    val_clusters: np.ndarray | None = None
    val_features: np.ndarray | None = None


class NeighbourRefiner:
    """Fine-tunes a copy of ``model``'s encoder and a k-way head on ``images.train_images``.

    With a ``run_dir``, its refinement checkpoint is written after each epoch and :meth:`resume` continues from it;
    ``trained_epochs`` (how long the autoencoder had trained) tells a stale checkpoint from a current one.
    """

    def __init__(
        self,
        model: nn.Module,
        images: ImageSet,
        config: RunConfig,
        initial_clusters: np.ndarray,
        run_dir: Path | None = None,
        trained_epochs: int = 0,
    ) -> None:
        self.settings, self.images, self.trained_epochs = config.refine, images, trained_epochs
        self.checkpoint_path = None if run_dir is None else RunDir(run_dir).refine_checkpoint
        torch.manual_seed(config.seed)
        self.model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        self.inputs = to_model_input(images.train_images)
        features = encode_pooled(self.model, self.inputs)
        self.neighbour_count = neighbour_count(self.settings.neighbours, len(self.inputs), config.cluster.k)
        self.neighbours = nearest_neighbours(features, self.neighbour_count)
        self.head = head_from_clusters(features, initial_clusters, config.cluster.k)
        self.target_shares = target_shares(initial_clusters, config.cluster.k, self.settings.balance)
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.model.parameters(), "lr": self.settings.lr},
                {"params": self.head.parameters(), "lr": self.settings.head_lr},
            ],
            fused=True,
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.view_config = config.model  # views are augmented as the model's own contrastive views were
        self.epoch = 0

    def state(self) -> dict:
        return {
            "kind": REFINE_KIND,
            "format_version": FORMAT_VERSION,
            "epoch": self.epoch,
            "trained_epochs": self.trained_epochs,
            "model": self.model.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def resume(self) -> bool:
        """Continue from this run's refinement checkpoint, if one was written for this model; return whether so.

        A checkpoint written after fewer training epochs (the run was since trained further) is started afresh.
        """
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        state = load_checked(self.checkpoint_path, REFINE_KIND, "an aeclust refinement checkpoint")
        if state.get("trained_epochs") != self.trained_epochs:
            return False
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epoch = state["epoch"]
        if self.settings.remine_neighbours and 0 < self.epoch < self.settings.epochs:
            self.mine_neighbours()  # as the interrupted run did after this epoch: they come from the model alone
        return True

    def mine_neighbours(self) -> None:
        """Each image's nearest neighbours in the refining encoder's pooled, unit-length latent space."""
        self.neighbours = nearest_neighbours(encode_pooled(self.model, self.inputs), self.neighbour_count)

    def train_one_epoch(self) -> tuple[float, list[int]]:
        """One pass over the images as anchors; the mean loss and how many anchors each cluster took, as it went."""
        self.model.train()
        batch_size, total, seen = self.settings.batch_size, 0.0, 0
        sizes = torch.zeros(self.head.out_features, dtype=torch.long)
        order = torch.randperm(len(self.inputs), generator=self.generator)[: self.settings.anchors_per_epoch]
        for start in range(0, len(order), batch_size):
            anchors = order[start : start + batch_size]
            picked = torch.randint(0, self.neighbours.shape[1], (len(anchors),), generator=self.generator)
            partners = self.neighbours[anchors, picked]
            views = torch.cat(
                [
                    contrastive_view(self.inputs[anchors], self.generator, self.view_config),
                    contrastive_view(self.inputs[partners], self.generator, self.view_config),
                ]
            )
            logits = self.head(pooled_unit_latents(self.model, views))
            loss = scan_loss(
                logits[: len(anchors)], logits[len(anchors) :], self.settings.entropy_weight, self.target_shares
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(anchors)
            seen += len(anchors)
            sizes += torch.bincount(logits[: len(anchors)].argmax(1), minlength=len(sizes))
        return total / seen, sizes.tolist()

    @torch.no_grad()  # not inference_mode: the targets it returns take part in a loss that is backpropagated
    def confident_assignments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the train images each cluster holds most confidently (its ``confident_share`` of them, by the
        head's probability), and their clusters, in index order."""
        probabilities = self.head(encode_pooled(self.model, self.inputs)).softmax(1)
        confidence, clusters = probabilities.max(1)
        chosen = []
        for cluster in range(probabilities.shape[1]):
            members = (clusters == cluster).nonzero().squeeze(1)
            keep = math.ceil(len(members) * self.settings.confident_share)
            chosen.append(members[confidence[members].argsort(descending=True, stable=True)[:keep]])
        chosen = torch.cat(chosen).sort().values
        return chosen, clusters[chosen]

    def self_label_one_epoch(self) -> tuple[float, list[int]]:
        """Cross-entropy towards the confidently held clusters, on strongly augmented views; the mean loss and how
        many confident images each cluster has.

        Each cluster's term is weighted by its target share (1/k, or the balance prior's) over its share of the
        confident images, so that a cluster grown past its size does not swallow the rest (as in SCAN).
        """
        chosen, targets = self.confident_assignments()
        sizes = torch.bincount(targets, minlength=self.head.out_features)
        weights = self_label_weights(sizes, self.target_shares)
        self.model.train()
        batch_size, total = self.settings.batch_size, 0.0
        order = torch.randperm(len(chosen), generator=self.generator)[: self.settings.anchors_per_epoch]
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            views = contrastive_view(self.inputs[chosen[picked]], self.generator, self.view_config)
            logits = self.head(pooled_unit_latents(self.model, views))
            loss = F.cross_entropy(logits, targets[picked], weight=weights)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(picked)
        return total / len(order), sizes.tolist()

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
                    f"confident per cluster {sizes} of {len(self.inputs)}"
                )
            self.epoch += 1
            if self.settings.remine_neighbours and self.epoch < scan_epochs:
                self.mine_neighbours()
            if self.checkpoint_path is not None:
                torch_save_atomic(self.checkpoint_path, self.state())
            log(f"refine {what}  ({time.perf_counter() - started:.0f}s)")
        return self.result()

    @torch.inference_mode()
    def result(self) -> Refinement:
        train_features = encode_pooled(self.model, self.inputs)
        refinement = Refinement(self.head(train_features).argmax(1).numpy(), train_features.numpy())
        if self.images.has_val:
            val_features = encode_pooled(self.model, to_model_input(self.images.val_images))
            refinement.val_clusters = self.head(val_features).argmax(1).numpy()
            refinement.val_features = val_features.numpy()
        return refinement


def refine_clusters(
    model: nn.Module,
    images: ImageSet,
    config: RunConfig,
    initial_clusters: np.ndarray,
    log: Callable[[str], None] = print,
) -> Refinement:
    """Refine a clustering of ``images.train_images`` as ``config.refine`` says, outside any run directory.

    The notebook entry point: ``model`` is a trained autoencoder (for example from ``aeclust.train.load_model``),
    ``initial_clusters`` the clustering stage's answer for the train images. Nothing is written to disk; ``model``
    itself is left unchanged.
    """
    if len(initial_clusters) != len(images.train_images):
        raise ValueError(
            f"{len(initial_clusters)} initial cluster labels for {len(images.train_images)} train images; "
            "expected one label per train image"
        )
    return NeighbourRefiner(model, images, config, initial_clusters).fit(log)
