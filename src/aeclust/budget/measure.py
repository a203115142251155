"""A run's own speed, measured on this machine and device before it plans its budget."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from aeclust.budget.plan import Speeds
from aeclust.cluster.neighbours import nearest_neighbours
from aeclust.cluster.stage import cluster_latents
from aeclust.config import AUTO_K, RunConfig
from aeclust.data import ImageSet
from aeclust.data.batches import images_at
from aeclust.encoders.autoencoder import Trainer
from aeclust.nn.augment import contrastive_view
from aeclust.nn.objectives import NeighbourConsistencyObjective
from aeclust.refine.scan import ClusterModel, pair_logits
from aeclust.runtime.engine import Engine
from aeclust.runtime.infer import infer
from aeclust.runtime.io import torch_save_atomic
from aeclust.runtime.loop import run_epoch, share_of_batch

SAMPLE = 2000  # images in the encoding and clustering samples


WARMUP_STEPS, TIMED_STEPS = 1, 5


def measure_speeds(config: RunConfig, images: ImageSet, engine: Engine) -> Speeds:
    """Time this run's own steps on this machine, with a throwaway model built as the run's will be.

    Under torchrun every process takes part (the steps are distributed as the run's are) and all return the same
    figures, the main process's. The random generators are left as they were, so the run that follows draws
    exactly what it would have without measuring.
    """
    started = time.perf_counter()
    devices = [engine.device] if engine.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        speeds = _measure(config, images, engine)
    speeds.measuring_seconds = time.perf_counter() - started
    return engine.broadcast(speeds if engine.is_main else None)


def _timed_steps(optimizer: torch.optim.Optimizer, engine: Engine, step, batch: torch.Tensor) -> float:
    """Seconds per step of ``step`` on ``batch``: the median of a few, each timed alone, after an untimed one
    (allocation, caches, kernel choice). The median, because one step slowed by the machine's other work would
    otherwise cost every planned epoch its share."""
    run_epoch([batch] * WARMUP_STEPS, step, optimizer, engine, description="measuring speed")
    seconds = []
    for _ in range(TIMED_STEPS):
        started = time.perf_counter()
        run_epoch([batch], step, optimizer, engine, description="measuring speed")  # ends synchronised
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _measure(config: RunConfig, images: ImageSet, engine: Engine) -> Speeds:
    train_images = images.train_images
    count = len(train_images)
    with tempfile.TemporaryDirectory(prefix="aeclust-measure-") as directory:  # it writes nothing there
        # The run's own training, as the run will make it: its step is what each batch of an epoch runs.
        trainer = Trainer(
            config.model, config.train, images, Path(directory), engine, seed=config.seed, workers=config.workers
        )
    autoencoder = trainer.model

    def batch_of(size: int) -> torch.Tensor:
        """This process's share of a batch of ``size`` train images (a set smaller than a batch repeats)."""
        indices = torch.arange(size) % count
        share = share_of_batch(indices, engine)
        return images_at(train_images, share if share is not None else indices[:1])

    pixels = batch_of(config.train.batch_size)
    trainer.method.train()

    def train_step(batch: torch.Tensor):
        loss, sums = trainer.step(batch)
        return loss, len(batch), sums

    train_step_seconds = _timed_steps(trainer.optimizer, engine, train_step, pixels)

    sample = train_images[: min(count, SAMPLE)]
    started = time.perf_counter()
    # Encoded and decoded as the history's MSE pass is; its latents are what the clustering is timed on below.
    latents = infer(autoencoder, sample, ("latents", "mse"), engine=engine).latents
    full_pass = len(sample) / max(time.perf_counter() - started, 1e-9)

    k = max(2, config.cluster.k)
    cluster_model = ClusterModel(autoencoder).to(engine.device, memory_format=torch.channels_last)
    started = time.perf_counter()
    pooled = infer(cluster_model, sample, ("pooled",), engine=engine).pooled
    encode = len(sample) / max(time.perf_counter() - started, 1e-9)
    cluster_model.head = nn.Linear(pooled.shape[1], k)

    refine = config.refine
    refine_module = engine.prepare(cluster_model)
    refine_optimizer = torch.optim.Adam(cluster_model.parameters(), lr=refine.lr, fused=engine.fused_optimizer)
    consistency = NeighbourConsistencyObjective(refine.entropy_weight, None, engine)
    pair_pixels = batch_of(2 * refine.batch_size)
    cluster_model.train()

    def views(batch: torch.Tensor) -> torch.Tensor:
        return contrastive_view(engine.images_to_device(batch), trainer.view_generator, config.model)

    def refine_step(batch: torch.Tensor):
        anchor_logits, partner_logits = pair_logits(refine_module, views, batch)
        return consistency(anchor_logits, partner_logits), len(anchor_logits), {}

    refine_step_seconds = _timed_steps(refine_optimizer, engine, refine_step, pair_pixels)

    cluster_seconds = val_cluster_seconds = neighbour_seconds = checkpoint_seconds = 0.0
    val_sample = min(len(images.val_images), SAMPLE) if images.has_val else 0
    if engine.is_main:

        def clustering_seconds(points: int) -> float:
            # As configured: with k auto, choosing k is most of the clustering's time (its range kept to what so
            # few points allow).
            cluster = replace(config.cluster, k=min(k, points))
            if config.cluster.k == AUTO_K:
                cluster = replace(config.cluster, k_max=min(config.cluster.k_max, points // 2))
            started = time.perf_counter()
            cluster_latents(latents[:points], cluster, config.seed)
            return time.perf_counter() - started

        cluster_seconds = clustering_seconds(len(sample))
        # Clustering has a cost of its own whatever N is (k-means' restarts), so val's is measured, not scaled down.
        val_cluster_seconds = clustering_seconds(min(val_sample, len(sample))) if val_sample else 0.0
        started = time.perf_counter()
        nearest_neighbours(pooled, min(refine.neighbours, len(sample) - 1), None)
        neighbour_seconds = time.perf_counter() - started
        checkpoint_seconds = _checkpoint_seconds(trainer.method, trainer.optimizer)
    return Speeds(
        train_step_seconds, refine_step_seconds, full_pass, encode, cluster_seconds, len(sample), val_cluster_seconds,
        min(val_sample, len(sample)), neighbour_seconds, checkpoint_seconds, 0.0,
    )  # fmt: skip


def _checkpoint_seconds(method: nn.Module, optimizer: torch.optim.Optimizer) -> float:
    """Seconds to write an epoch's two checkpoints (the weights alone, then weights and optimizer) as a run does."""
    with tempfile.TemporaryDirectory(prefix="aeclust-measure-") as directory:
        started = time.perf_counter()
        torch_save_atomic(Path(directory) / "epoch.pt", {"model": method.state_dict()})
        full = {"model": method.state_dict(), "optimizer": optimizer.state_dict()}
        torch_save_atomic(Path(directory) / "last.pt", full)
        return time.perf_counter() - started
