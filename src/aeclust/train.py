"""Training: reconstruction MSE (+ β · rotation cross-entropy), a checkpoint and a history row every epoch.

A checkpoint holds everything needed to rebuild the model and continue exactly where training stopped:
weights, optimizer, the random generator's state, the epoch and the history so far (as nanoGPT does).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from aeclust.cluster import Clustering, cluster_latents
from aeclust.augment import contrastive_view, random_flip
from aeclust.config import ModelConfig, RunConfig, TrainConfig
from aeclust.data import ImageSet
from aeclust.embed import encode_images, to_model_input
from aeclust.errors import CheckpointError, ConfigError, unknown_name
from aeclust.io import remove_stale_temporaries, torch_save_atomic
from aeclust.metrics import accuracy_of
from aeclust.losses import nt_xent_loss
from aeclust.models import ProjectionHead, RotationHead, create_autoencoder, rotate_batch, shrink_factor
from aeclust.rundir import FORMAT_VERSION, EpochRecord, RunDir, load_checked

CHECKPOINT_KIND = "aeclust-checkpoint"


@dataclass
class Evaluation:
    """What the latest per-epoch evaluation computed, kept so the run's final step need not compute it again."""

    epoch: int
    train_latents: np.ndarray
    train_mse: float
    val_latents: np.ndarray | None = None
    val_mse: float | None = None
    val_clustering: Clustering | None = None


def encode_splits(model: torch.nn.Module, images: ImageSet, epoch: int) -> Evaluation:
    """Latents and reconstruction MSE of the train images and, when there are any, the val images."""
    train_latents, train_mse = encode_images(model, images.train_images, with_mse=True)
    evaluation = Evaluation(epoch, train_latents, float(train_mse))
    if images.has_val:
        val_latents, val_mse = encode_images(model, images.val_images, with_mse=True)
        evaluation.val_latents, evaluation.val_mse = val_latents, float(val_mse)
    return evaluation


def usable_cores() -> int:
    """CPU cores this process may run on: fewer than the machine has under taskset or a container's CPU set."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def set_threads(threads: int) -> None:
    """Use ``threads`` torch threads, or (0) one per usable core: more threads than cores make each epoch slower."""
    torch.set_num_threads(threads if threads > 0 else usable_cores())


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_views(model: ModelConfig) -> None:
    """Views of another size than the image's need a decoder that gives back any size and heads that pool."""
    if not model.view_size and not model.small_views:
        return
    factor = shrink_factor(model.widths)
    multiple = f"a positive multiple of {factor}, the factor by which the encoder shrinks a side"
    no_small_views = "small_views=0 for none"
    if model.view_size:
        what, way_out = f"model view_size={model.view_size}", "view_size=0 for full-size views"
    else:
        what, way_out = f"model small_views={model.small_views}", no_small_views
    if not model.contrastive or model.arch != "resnet":
        problem = "contrastive views of a resnet model; this model has " + (
            f"arch {model.arch}" if model.contrastive else "no contrastive views"
        )
    elif model.view_size < 0 or model.view_size % factor:
        problem = multiple
    elif model.small_views and model.rotate_views:  # turned full views would meet small views left unturned
        what, way_out = f"model small_views={model.small_views}", no_small_views
        problem = "rotation predicted on a separately rotated full-size batch (rotate_views=false)"
    elif model.small_views and (model.small_view_size <= 0 or model.small_view_size % factor):
        what, problem, way_out = f"model small_view_size={model.small_view_size}", multiple, no_small_views
    elif model.small_views and not 0 < model.small_crop_area < model.min_crop_area:
        what, way_out = f"model small_crop_area={model.small_crop_area}", no_small_views
        problem = f"a share between 0 and min_crop_area ({model.min_crop_area}), where the full views' crops begin"
    else:
        return
    raise ConfigError(f"{what}: expected {problem}, or {way_out}")


class Trainer:
    """Trains one autoencoder on ``images.train_images`` and records a checkpoint per epoch in ``run_dir``."""

    def __init__(self, config: RunConfig, images: ImageSet, run_dir: Path) -> None:
        check_views(config.model)
        self.config = config
        self.images = images
        self.run_dir = RunDir(run_dir)
        self.checkpoint_dir = self.run_dir.checkpoints
        set_threads(config.threads)
        torch.manual_seed(config.seed)
        self.model = create_autoencoder(config.model, images.image_size).to(memory_format=torch.channels_last)
        channels, side, _ = self.model.latent_shape
        if config.model.rotate_views and config.model.view_size:  # the head reads the turned views' smaller grid
            side = config.model.view_size // shrink_factor(config.model.widths)
        self.rotation_head = RotationHead(channels * side * side) if config.model.rotation else None
        self.projection_head = ProjectionHead(channels, channels) if config.model.contrastive else None
        self.heads = {"rotation": self.rotation_head, "projection": self.projection_head}
        parameters = [
            p for module in (self.model, *self.heads.values()) if module is not None for p in module.parameters()
        ]
        # The fused kernel updates all parameters in one pass: several times faster per step on a CPU.
        self.optimizer = torch.optim.Adam(
            parameters, lr=config.train.lr, weight_decay=config.train.weight_decay, fused=True
        )
        self.scheduler = make_scheduler(self.optimizer, config.train, len(images.train_images))
        # One generator drives shuffling, flips, crops and rotations, so its saved state makes a resume exact.
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history: list[EpochRecord] = []
        self.latest_evaluation: Evaluation | None = None

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self, full: bool) -> dict:
        state = {
            "kind": CHECKPOINT_KIND,
            "format_version": FORMAT_VERSION,
            "model_config": asdict(self.config.model),
            "image_size": self.images.image_size,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "heads": {name: head.state_dict() for name, head in self.heads.items() if head is not None},
        }
        if full:
            state |= {
                "config": self.config.to_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(),
                "history": [asdict(record) for record in self.history],
            }
        return state

    def save_checkpoint(self) -> None:
        torch_save_atomic(self.run_dir.epoch_checkpoint(self.epoch), self.state(full=False))
        torch_save_atomic(self.run_dir.last_checkpoint, self.state(full=True))

    def resume(self) -> bool:
        """Continue from ``checkpoints/last.pt`` if there is one; return whether there was."""
        path = self.run_dir.last_checkpoint
        if not path.exists():
            return False
        for stale in remove_stale_temporaries(self.checkpoint_dir):
            log(f"removed {stale}, a checkpoint left half-written when the run was stopped")
        state = load_checkpoint(path, expect=self.config.model)
        planned = state["config"]["train"]["epochs"]
        if self.config.train.schedule == "onecycle" and planned != self.config.train.epochs:
            raise ConfigError(
                f"{path}: this run's one-cycle learning rate was planned over {planned} epochs, found "
                f"{self.config.train.epochs} asked for; a one-cycle run cannot be extended, start a new run instead"
            )
        self.model.load_state_dict(state["model"])
        for name, head in self.heads.items():
            if head is not None:
                head.load_state_dict(state["heads"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.epoch = state["epoch"]
        self.history = [EpochRecord(**row) for row in state["history"]]
        log(f"resuming from {path} after epoch {self.epoch}")
        return True

    # -- training ----------------------------------------------------------------------------------
    def set_mode(self, training: bool) -> None:
        for module in (self.model, *self.heads.values()):
            if module is not None:
                module.train(training)

    def step_loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The objective on one batch, and how many rotations the head got right.

        Without the contrastive objective this is the study's: the (rotated) batch is reconstructed and, with
        rotation on, its rotation predicted from the same latent. With it, two augmented views are encoded
        together, the first is reconstructed, and rotation (if on) is predicted on a separately rotated batch;
        multi-crop's small views, if any, are encoded after them and paired with both in the contrastive loss.
        """
        model, config = self.model, self.config.model
        if self.config.train.flip:
            batch = random_flip(batch, self.generator)
        turns, smalls = None, []
        if config.contrastive:
            views = [contrastive_view(batch, self.generator, config) for _ in range(2)]
            if self.rotation_head is not None and config.rotate_views:
                views[0], turns = rotate_batch(views[0], self.generator)
                views[1], _ = rotate_batch(views[1], self.generator, turns)
                turns = torch.cat([turns, turns])
            inputs = torch.cat(views).contiguous(memory_format=torch.channels_last)
            smalls = [contrastive_view(batch, self.generator, config, small=True) for _ in range(config.small_views)]
        else:
            if self.rotation_head is not None:
                batch, turns = rotate_batch(batch, self.generator)
            views = [batch]
            inputs = batch.contiguous(memory_format=torch.channels_last)
        latent = model.encode(inputs)
        n = len(batch)
        loss = torch.zeros(())
        if config.reconstruction_weight > 0:
            loss = loss + config.reconstruction_weight * F.mse_loss(model.decode(latent[:n]), views[0])
        if self.projection_head is not None:
            projected = self.projection_head(latent)
            full = [projected[:n], projected[n:]]
            pairs = [(full[0], full[1])]
            if smalls:  # every small view is paired with both full views of its image
                small_latent = model.encode(torch.cat(smalls).contiguous(memory_format=torch.channels_last))
                pairs += [(small, view) for small in self.projection_head(small_latent).split(n) for view in full]
            contrastive = sum(nt_xent_loss(a, b, config.temperature) for a, b in pairs) / len(pairs)
            loss = loss + config.contrastive_weight * contrastive
        correct = 0.0
        if self.rotation_head is not None:
            if turns is None:
                rotated, turns = rotate_batch(batch, self.generator)
                rotation_latent = model.encode(rotated.contiguous(memory_format=torch.channels_last))
            else:
                rotation_latent = latent
            logits = self.rotation_head(rotation_latent)
            loss = loss + config.rotation_weight * F.cross_entropy(logits, turns)
            # Counted per image of the batch, so the epoch's rotation accuracy stays a share of images.
            correct = float((logits.argmax(1) == turns).sum()) * n / len(turns)
        return loss, correct

    def train_one_epoch(self) -> tuple[float, float]:
        self.set_mode(True)
        batch_size = self.config.train.batch_size
        order = torch.randperm(len(self.inputs), generator=self.generator)
        total_loss, correct, seen = 0.0, 0, 0
        batches = range(0, len(order), batch_size)
        progress = tqdm(
            batches, desc=f"epoch {self.epoch + 1}/{self.config.train.epochs}", leave=False, disable=None, unit="batch"
        )
        for start in progress:
            batch = self.inputs[order[start : start + batch_size]]
            loss, batch_correct = self.step_loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            total_loss += loss.item() * len(batch)
            correct += batch_correct
            seen += len(batch)
            progress.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
        rotation_accuracy = correct / seen if self.rotation_head is not None else float("nan")
        return total_loss / seen, rotation_accuracy

    def evaluate(self) -> Evaluation:
        """Train MSE on all of trainX (unrotated) and val accuracy of the whole clustering pipeline.

        Evaluates the model as it is after ``self.epoch`` epochs; the latents come along for the run's last step.
        """
        evaluation = encode_splits(self.model, self.images, self.epoch)
        if self.images.has_val:
            evaluation.val_clustering = cluster_latents(evaluation.val_latents, self.config.cluster, self.config.seed)
        self.latest_evaluation = evaluation
        return evaluation

    def val_accuracy(self, evaluation: Evaluation) -> float:
        if evaluation.val_clustering is None:
            return float("nan")
        return accuracy_of(self.images.val_labels, evaluation.val_clustering.clusters)

    def fit(self, on_epoch: Callable[[EpochRecord], None] | None = None) -> list[EpochRecord]:
        """Train until ``config.train.epochs``, evaluating, checkpointing and logging after every epoch."""
        self.inputs = to_model_input(self.images.train_images)
        while self.epoch < self.config.train.epochs:
            started = time.perf_counter()
            loss, rotation_accuracy = self.train_one_epoch()
            trained = time.perf_counter()
            self.epoch += 1
            evaluation = self.evaluate()
            train_mse, val_accuracy = evaluation.train_mse, self.val_accuracy(evaluation)
            record = EpochRecord(
                self.epoch, loss, train_mse, rotation_accuracy, val_accuracy,
                trained - started, time.perf_counter() - trained,
            )  # fmt: skip
            self.history.append(record)
            self.save_checkpoint()
            self.run_dir.write_history(self.history)
            log(
                f"epoch {self.epoch:3d}/{self.config.train.epochs}  loss {loss:.4f}  train MSE {train_mse:.4f}  "
                f"val acc {val_accuracy:.3f}  ({record.train_seconds:.0f}s train, {record.eval_seconds:.0f}s eval)"
            )
            if on_epoch is not None:
                on_epoch(record)
        return self.history


SCHEDULES = ("constant", "onecycle")


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig, n_images: int):
    """The learning-rate schedule, stepped once per batch."""
    if train.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if train.schedule == "onecycle":
        steps = max(1, train.epochs * math.ceil(n_images / train.batch_size))
        # A short warm-up, then cosine annealing: the best short-budget schedule we measured.
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=train.lr, total_steps=steps, pct_start=0.15)
    raise unknown_name("schedule", train.schedule, SCHEDULES)


def load_checkpoint(path: Path, expect: ModelConfig | None = None) -> dict:
    """Load a checkpoint, refusing one from another format version or (given ``expect``) another model."""
    state = load_checked(path, CHECKPOINT_KIND, "an aeclust checkpoint")
    if expect is not None and checkpoint_model_config(path, state) != expect:
        raise CheckpointError(
            f"{path}: checkpoint is of model {state['model_config']['arch']} with other settings; "
            f"expected {expect.arch} as configured for this run"
        )
    return state


def checkpoint_model_config(path: Path, state: dict) -> ModelConfig:
    """The model settings a checkpoint was trained with; a setting added since then takes its default, which is
    what that release did without it."""
    saved = state["model_config"]
    try:
        return ModelConfig(**{**saved, "widths": tuple(saved["widths"])})
    except TypeError:  # a setting this release does not know
        unknown = sorted(set(saved) - {f.name for f in fields(ModelConfig)})
        raise CheckpointError(
            f"{path}: checkpoint has model settings this aeclust does not know ({', '.join(unknown)}); "
            "it comes from a newer release"
        ) from None


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the autoencoder stored in a checkpoint, in eval mode; also return the checkpoint."""
    state = load_checkpoint(path)
    config = checkpoint_model_config(path, state)
    model = create_autoencoder(config, state["image_size"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:  # missing, unexpected or differently shaped weights
        raise CheckpointError(
            f"{path}: its {config.arch} weights do not fit this aeclust's {config.arch} layout "
            "(the checkpoint comes from an earlier release); train the run again to report or resume it"
        ) from None
    return model.eval(), state
