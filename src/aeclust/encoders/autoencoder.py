"""Training: the autoencoder learns by its objectives (reconstruction MSE, rotation, contrastive views), with a
checkpoint and a history row every epoch.

A checkpoint holds everything needed to rebuild the model and continue exactly where training stopped:
weights, optimizer, the random generators' states, the epoch and the history so far (as nanoGPT does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aeclust.config import ModelConfig, RunConfig, TrainConfig, read_replans
from aeclust.data import ImageSet
from aeclust.data.batches import loader_workers, read_batches
from aeclust.encoders.base import Encoder
from aeclust.encoders.records import LAST_CHECKPOINT, EpochRecord, epoch_checkpoint
from aeclust.errors import CheckpointError, ConfigError, unknown_name
from aeclust.format_version import FORMAT_VERSION
from aeclust.metrics import accuracy_of
from aeclust.nn.models import create_autoencoder, shrink_factor
from aeclust.nn.objectives import build_objectives, draw_training_views
from aeclust.runtime.engine import Engine, start_engine
from aeclust.runtime.infer import infer
from aeclust.runtime.io import load_checked, remove_stale_temporaries, torch_save_atomic
from aeclust.runtime.loop import run_epoch, shard_batches
from aeclust.runtime.progress import log

CHECKPOINT_KIND = "aeclust-checkpoint"


@dataclass
class Evaluation:
    """What the latest per-epoch evaluation computed, kept so the run's final step need not compute it again."""

    epoch: int
    train_latents: np.ndarray | None  # None where only the MSE was needed (every epoch but the last)
    train_mse: float
    val_latents: np.ndarray | None = None
    val_mse: float | None = None
    val_clustering: Any = None  # what TrainingHooks.cluster_val made of the val latents (its ``clusters``)


def encode_splits(
    model: nn.Module,
    images: ImageSet,
    epoch: int,
    engine: Engine | None = None,
    *,
    train_latents: bool = True,
    train_latents_file: Path | None = None,
    train_mse: bool = True,
    val: bool = True,
) -> Evaluation:
    """Reconstruction MSE of the train images and, when there are any (and ``val``), the val images, with the val
    latents and (``train_latents``) the train latents, written to ``train_latents_file`` when given (see
    :func:`infer`).

    Without ``train_mse`` or ``train_latents`` the train images are not encoded at all (their MSE is nan)."""
    train_outputs = (("latents",) if train_latents else ()) + (("mse",) if train_mse else ())
    evaluation = Evaluation(epoch, None, float("nan"))
    if train_outputs:
        train = infer(model, images.train_images, train_outputs, engine=engine, latents_file=train_latents_file)
        evaluation.train_latents = train.latents
        evaluation.train_mse = train.mse if train_mse else float("nan")
    if images.has_val and val:
        encoded = infer(model, images.val_images, ("latents", "mse"), engine=engine)
        evaluation.val_latents, evaluation.val_mse = encoded.latents, encoded.mse
    return evaluation


@dataclass
class TrainedModel:
    """What training hands on: the autoencoder, in eval mode, and the latest evaluation of it."""

    autoencoder: nn.Module
    epoch: int
    history: list[EpochRecord]
    evaluation: Evaluation


def check_views(model: ModelConfig) -> None:
    """Views of another size than the image's need a decoder that gives back any size and heads that pool; a
    resized rotation batch needs a batch of its own to resize."""
    if not 0 < model.reconstruction_share <= 1:
        raise ConfigError(
            f"model reconstruction_share={model.reconstruction_share}: expected a share of each batch above 0 and at "
            "most 1, or reconstruction_weight=0 for no reconstruction"
        )
    _check_view_sizes(model)
    if model.momentum:
        what, way_out = f"model momentum={model.momentum}", "momentum=0 for none"
        if not 0 < model.momentum < 1:
            raise ConfigError(f"{what}: expected a share above 0 and below 1 (0.99 is usual), or {way_out}")
        if not model.contrastive or model.small_views:
            raise ConfigError(
                f"{what}: expected contrastive views without multi-crop's small views (contrastive=true, "
                f"small_views=0), or {way_out}"
            )
    if model.rotation_size:
        what, way_out = f"model rotation_size={model.rotation_size}", "rotation_size=0 for the image's own size"
        if not (model.contrastive and model.arch == "resnet" and model.rotation and not model.rotate_views):
            problem = "a separately rotated batch beside contrastive views of a resnet model (contrastive=true, "
            problem += "rotation=true, rotate_views=false, arch resnet)"
        elif model.rotation_size < 0 or model.rotation_size % shrink_factor(model.widths):
            problem = _side_multiple(model)
        else:
            return
        raise ConfigError(f"{what}: expected {problem}, or {way_out}")


def _side_multiple(model: ModelConfig) -> str:
    return f"a positive multiple of {shrink_factor(model.widths)}, the factor by which the encoder shrinks a side"


def _check_view_sizes(model: ModelConfig) -> None:
    if not model.view_size and not model.small_views:
        return
    factor, multiple = shrink_factor(model.widths), _side_multiple(model)
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


class SelfSupervisedModel(nn.Module):
    """An autoencoder and the objectives it learns by. Calling it is one training step's loss, so that
    DistributedDataParallel, which synchronises gradients of what ``forward`` used, can wrap it whole."""

    def __init__(self, autoencoder: nn.Module, config: ModelConfig, flip: bool, engine: Engine | None = None) -> None:
        super().__init__()
        self.autoencoder, self.config, self.flip = autoencoder, config, flip
        self.objectives = build_objectives(autoencoder, config, engine)
        if "reconstruction" not in self.objectives:  # its gradients would never come; DDP would wait for them
            autoencoder.decoder.requires_grad_(False)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views = draw_training_views(
            images, self.autoencoder, generator, self.config, self.flip, turn="rotation" in self.objectives
        )
        loss, reported = torch.zeros((), device=images.device), {}
        for objective in self.objectives.values():
            term, sums = objective(views)
            loss = loss + term
            reported |= sums
        return loss, reported

    @property
    def momentum_target(self) -> nn.Module | None:
        """The contrastive objective's momentum copy of the encoder, when it has one: not trained, so not among the
        heads, but a checkpoint keeps it for an exact resume."""
        contrastive = self.objectives["contrastive"] if "contrastive" in self.objectives else None
        return getattr(contrastive, "target", None)

    def heads(self) -> dict[str, nn.Module]:
        """The objectives' heads by the names checkpoints give them, in the optimizer's order (both as in the
        releases before objectives were modules, so their runs still resume exactly)."""
        return {
            saved: self.objectives[name].head for name, saved in CHECKPOINT_HEADS.items() if name in self.objectives
        }


# objective → the name its head has in a checkpoint's "heads"
CHECKPOINT_HEADS = {"rotation": "rotation", "contrastive": "projection"}


@dataclass
class TrainingHooks:
    """What the stages above training add to it, called as it goes: none is needed to train, and training never
    calls the stages themselves (clustering, the budget, the run directory)."""

    # The val images' latents → their clustering (with ``clusters``), for the history's val accuracy; only the main
    # process calls it. None: no val accuracy in the history.
    cluster_val: Callable[[np.ndarray], Any] | None = None
    # The history so far, after every epoch (main process only): a run writes it to its history.csv.
    history: Callable[[list[EpochRecord]], None] | None = None
    # Given the training settings, the epoch just trained and its training seconds, the settings to go on with: a
    # budgeted run's plan made again (aeclust.budget), else the settings as they are.
    replan: Callable[[TrainConfig, int, float], TrainConfig] | None = None
    # Appended to each epoch's line where it says something: a budgeted run's time left.
    status: Callable[[], str] | None = None
    # Filled with the train latents after the last epoch (memory-mapped: at a million images they are 8 GB); None:
    # kept in memory.
    latents_file: Path | None = None


class Trainer:
    """Trains one autoencoder, built as ``model`` says, on ``images.train_images`` as ``train`` says, and records a
    checkpoint per epoch in ``directory``'s ``checkpoints/``; ``hooks`` add what a run wants beside (see
    :class:`TrainingHooks`). ``seed`` draws every random number; ``workers`` read batches beside it
    (:func:`aeclust.data.batches.loader_workers`).

    ``engine`` says where (default: the best device here, in this one process). Under torchrun every process makes a
    Trainer; each trains on its share of every batch and only the main one writes files.
    """

    def __init__(
        self,
        model: ModelConfig,
        train: TrainConfig,
        images: ImageSet,
        directory: Path,
        engine: Engine | None = None,
        hooks: TrainingHooks | None = None,
        *,
        seed: int = 0,
        workers: int | None = None,
    ) -> None:
        check_views(model)
        self.model_settings, self.settings, self.seed, self.workers = model, train, seed, workers
        self.images = images
        self.engine = engine if engine is not None else start_engine("auto")
        self.directory = Path(directory)
        self.hooks = hooks if hooks is not None else TrainingHooks()
        self.last_checkpoint = self.directory / LAST_CHECKPOINT
        self.checkpoint_dir = self.last_checkpoint.parent
        torch.manual_seed(seed)
        self.model = create_autoencoder(model, images.image_size)
        self.method = SelfSupervisedModel(self.model, model, train.flip, self.engine)
        self.training_module = self.engine.prepare(self.method)
        self.model = self.method.autoencoder  # SyncBatchNorm conversion may have replaced its layers
        self.heads = self.method.heads()
        parameters = [p for module in (self.model, *self.heads.values()) for p in module.parameters()]
        # The fused kernel updates all parameters in one pass: several times faster per step on a CPU.
        self.optimizer = torch.optim.Adam(
            parameters,
            lr=train.lr,
            weight_decay=train.weight_decay,
            fused=self.engine.fused_optimizer,
        )
        self.scheduler = make_scheduler(self.optimizer, train, len(images.train_images))
        self.scaler = self.engine.grad_scaler()
        # One generator drives shuffling, flips, crops and rotations, so its saved state makes a resume exact.
        # Under torchrun it only orders the epochs (alike in every process); each process draws its views from its own.
        self.generator = torch.Generator().manual_seed(seed)
        self.view_generator = self.engine.view_generator(self.generator, seed)
        self.epoch = 0
        self.history: list[EpochRecord] = []
        self.latest_evaluation: Evaluation | None = None

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self, full: bool) -> dict:
        heads = {name: head.state_dict() for name, head in self.heads.items()}
        state = weights_state(self.model_settings, self.images.image_size, self.epoch, self.model, heads)
        if full:
            state |= {
                "train": asdict(self.settings),
                "seed": self.seed,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(),
                "history": [asdict(record) for record in self.history],
            } | self.engine.process_state(self.view_generator)
            if self.scaler is not None:
                state["scaler"] = self.scaler.state_dict()
            if self.method.momentum_target is not None:
                state["momentum_target"] = self.method.momentum_target.state_dict()
        return state

    def save_checkpoint(self) -> None:
        state = self.state(full=True)  # a collective under torchrun: every process takes part, one writes
        if self.engine.is_main:
            torch_save_atomic(epoch_checkpoint(self.directory, self.epoch), self.state(full=False))
            torch_save_atomic(self.last_checkpoint, state)

    def resume(self) -> bool:
        """Continue from ``checkpoints/last.pt`` if there is one; return whether there was."""
        path = self.last_checkpoint
        if not path.exists():
            return False
        if self.engine.is_main:
            for stale in remove_stale_temporaries(self.checkpoint_dir):
                log(f"removed {stale}, a checkpoint left half-written when the run was stopped")
        state = load_checkpoint(path, expect=self.model_settings)
        # The saved schedule must be laid out over what the next epoch follows here: a budgeted run stopped before
        # its midway plan's epoch, saved before that plan, continues its saved schedule up to there as it would
        # have run (schedule_epochs).
        saved = saved_training(state)
        following = state["epoch"] + 1
        if self.settings.schedule == "onecycle" and (
            schedule_epochs(saved, following) != schedule_epochs(self.settings, following)
        ):
            planned = saved.epochs
            raise ConfigError(
                f"{path}: this run's one-cycle learning rate was planned over {planned} epochs, found "
                f"{self.settings.epochs} asked for; a one-cycle run cannot be extended, start a new run instead"
            )
        self.engine.restore_processes(path, state, self.view_generator)
        self.model.load_state_dict(state["model"])
        for name, head in self.heads.items():
            head.load_state_dict(state["heads"][name])
        if self.method.momentum_target is not None:
            self.method.momentum_target.load_state_dict(state["momentum_target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self.epoch = state["epoch"]
        self.history = [EpochRecord(**row) for row in state["history"]]
        log(f"resuming from {path} after epoch {self.epoch}")
        return True

    # -- training ----------------------------------------------------------------------------------
    def step(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One batch's loss and the sums its objectives report (this process's share of the batch): what every
        epoch runs, and what a budget times before it plans."""
        return self.training_module(self.engine.images_to_device(pixels), self.view_generator)

    def train_one_epoch(self) -> tuple[float, float]:
        """One pass over the train images in a fresh order; the mean loss and the rotation head's accuracy."""
        self.method.train()
        order = torch.randperm(len(self.images.train_images), generator=self.generator)


        def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
            indices, pixels = batch
            loss, sums = self.step(pixels)
            return loss, len(indices), sums

        batch_size = self.settings.batch_size
        batches = read_batches(
            self.images.train_images, shard_batches(order, batch_size, self.engine),
            loader_workers(self.workers, self.engine.device), pin_memory=self.engine.is_cuda,
        )  # fmt: skip
        totals = run_epoch(
            batches, step, self.optimizer, self.engine,
            scheduler=self.scheduler, scaler=self.scaler, total=math.ceil(len(order) / batch_size),
            description=f"epoch {self.epoch + 1}/{self.settings.epochs}",
        )  # fmt: skip
        self.engine.sync_buffers(self.method)
        rotation = totals.sums.get("rotation_correct")
        return totals.loss, (rotation / totals.images if rotation is not None else float("nan"))

    def after_epoch(self, seconds: float) -> None:
        """A budgeted run plans again after some epochs (its first, then a third, two thirds and five sixths of the
        way). Where the next epoch's one-cycle schedule is laid out over other epochs than this one's (a plan changed
        them, or a run repeating such a plan by its settings reaches the epoch where it did), the rest of the schedule
        is laid out over those, from the step this epoch reached."""
        laid_out = schedule_epochs(self.settings, self.epoch)
        if self.hooks.replan is not None:
            self.settings = self.hooks.replan(self.settings, self.epoch, seconds)
        train = self.settings
        following = schedule_epochs(train, self.epoch + 1)
        if train.schedule == "onecycle" and self.epoch < train.epochs and following != laid_out:
            self.scheduler = make_scheduler(
                self.optimizer, train, len(self.images.train_images),
                laid_out_over=following, from_step=self.scheduler.last_epoch,
            )  # fmt: skip

    def evaluate(self) -> Evaluation:
        """Train MSE on all of trainX (unrotated) and val accuracy of the whole clustering pipeline.

        Evaluates the model as it is after ``self.epoch`` epochs. After the last epoch the train latents come along
        for the run's final step, written straight to the run's ``arrays/train_latents.npy`` (at a million images
        they are 8 GB); earlier epochs need only the MSE, and only every ``mse_every``-th (its cost is a pass over
        every train image). Under torchrun every process encodes its share; the main one clusters val.
        """
        last = self.epoch >= self.settings.epochs
        train = self.settings
        evaluation = encode_splits(
            self.model, self.images, self.epoch, self.engine, train_latents=last,
            train_latents_file=self.hooks.latents_file if last and self.engine.is_main else None,
            train_mse=last or (train.mse_every > 0 and self.epoch % train.mse_every == 0),
            val=last or (train.val_every > 0 and self.epoch % train.val_every == 0),
        )  # fmt: skip
        cluster_val = self.hooks.cluster_val
        if evaluation.val_latents is not None and self.engine.is_main and cluster_val is not None:
            evaluation.val_clustering = cluster_val(evaluation.val_latents)
        self.latest_evaluation = evaluation
        return evaluation

    def val_accuracy(self, evaluation: Evaluation) -> float:
        if evaluation.val_clustering is None:
            return float("nan")
        return accuracy_of(self.images.val_labels, evaluation.val_clustering.clusters)

    def fit(self, on_epoch: Callable[[EpochRecord], None] | None = None) -> list[EpochRecord]:
        """Train until ``train.epochs``, evaluating, checkpointing and logging after every epoch."""
        while self.epoch < self.settings.epochs:
            started = time.perf_counter()
            loss, rotation_accuracy = self.train_one_epoch()
            trained = time.perf_counter()
            self.epoch += 1
            self.after_epoch(trained - started)
            evaluation = self.evaluate()
            train_mse, val_accuracy = evaluation.train_mse, self.val_accuracy(evaluation)
            record = EpochRecord(
                self.epoch, loss, train_mse, rotation_accuracy, val_accuracy,
                trained - started, time.perf_counter() - trained,
            )  # fmt: skip
            self.history.append(record)
            self.save_checkpoint()
            if self.engine.is_main and self.hooks.history is not None:
                self.hooks.history(self.history)
            # Either may be left out at some epochs (train.mse_every, train.val_every), or have no images to measure.
            mse = f"{train_mse:.4f}" if math.isfinite(train_mse) else "  –   "
            accuracy = f"{val_accuracy:.3f}" if math.isfinite(val_accuracy) else "  –  "
            status = self.hooks.status() if self.hooks.status is not None else ""
            log(
                f"epoch {self.epoch:3d}/{self.settings.epochs}  loss {loss:.4f}  train MSE {mse}  "
                f"val acc {accuracy}  ({record.train_seconds:.0f}s train, {record.eval_seconds:.0f}s eval)"
                + (f"  {status}" if status else "")
            )
            if on_epoch is not None:
                on_epoch(record)
        if self.epoch == 0 and not self.last_checkpoint.exists():
            # A run of no epochs clusters its untrained model: kept, so predict, recluster and report can use it.
            self.save_checkpoint()
        return self.history

    def result(self) -> TrainedModel:
        """The trained model and its evaluation after the last epoch (encoded now if no epoch ran here)."""
        evaluation = self.latest_evaluation
        if evaluation is None or evaluation.epoch != self.epoch or evaluation.train_latents is None:
            evaluation = self.evaluate()
        return TrainedModel(self.model.eval(), self.epoch, self.history, evaluation)


SCHEDULES = ("constant", "onecycle")


def weights_state(model: ModelConfig, image_size: int, epoch: int, autoencoder: nn.Module, heads: dict) -> dict:
    """A checkpoint of the weights alone (an epoch's, or a saved encoder's): enough to rebuild the autoencoder
    (:func:`load_model`)."""
    return {
        "kind": CHECKPOINT_KIND, "format_version": FORMAT_VERSION, "model_config": asdict(model),
        "image_size": image_size, "epoch": epoch, "model": autoencoder.state_dict(), "heads": heads,
    }  # fmt: skip


def saved_training(state: dict) -> TrainConfig:
    """The training settings a full checkpoint was written under; one from before checkpoints kept the training
    section alone holds the whole run's settings."""
    if "train" in state:
        return TrainConfig(**read_replans(state["train"]))
    return RunConfig.from_dict(state["config"]).train


def schedule_epochs(train: TrainConfig, epoch: int) -> int:
    """The epochs over which epoch ``epoch`` (from 1) of a one-cycle run followed its schedule: a budgeted run's
    first plan for its first epoch, then each plan until it planned again midway, then its last."""
    if epoch == 1 and train.provisional_epochs:
        return train.provisional_epochs
    for index, replanned_after in enumerate(train.replanned_after):
        if epoch <= replanned_after:  # the plan then in force; 0: its epochs were those of the plan after it
            return next((epochs for epochs in train.epochs_before_replan[index:] if epochs), train.epochs)
    return train.epochs


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    train: TrainConfig,
    n_images: int,
    laid_out_over: int | None = None,
    from_step: int = 0,
):
    """The learning-rate schedule, stepped once per batch. The one-cycle schedule is laid out over
    ``laid_out_over`` epochs (by default those the first epoch followed: :func:`schedule_epochs`), and given
    ``from_step`` continues an optimizer's earlier one-cycle schedule at that step."""
    if train.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if train.schedule == "onecycle":
        epochs = laid_out_over if laid_out_over is not None else schedule_epochs(train, 1)
        steps = max(1, epochs * math.ceil(n_images / train.batch_size))
        # A short warm-up, then cosine annealing: the best short-budget schedule we measured. The learning rates it
        # cycles between are those the earlier schedule put in the optimizer's groups (the same train.lr).
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=train.lr, total_steps=steps, pct_start=0.15, last_epoch=from_step - 1
        )
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


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
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
    return model.to(device).eval(), state


class AutoencoderEncoder(Encoder):
    """aeclust's own kind: an autoencoder trained on the images themselves by its objectives (reconstruction,
    rotation, contrastive views), its latents the features (N×C×h×w).

    ``model`` and ``train`` are a run's sections of those names; ``directory`` keeps the checkpoints (one per epoch,
    and ``last.pt`` to resume from); ``hooks`` add what a run wants beside the training (:class:`TrainingHooks`).
    """

    kind = "autoencoder"

    def __init__(
        self,
        model: ModelConfig,
        train: TrainConfig,
        *,
        directory: Path,
        seed: int = 0,
        workers: int | None = None,
        engine: Engine | None = None,
        hooks: TrainingHooks | None = None,
    ) -> None:
        self.model, self.train, self.directory = model, train, directory
        self.seed, self.workers, self.engine, self.hooks = seed, workers, engine, hooks

    def trainer(self, images: ImageSet, resume: bool = False) -> Trainer:
        """The training this encoder is fitted by, made once (and continued from its last checkpoint with
        ``resume``): a run reads its history before it trains on."""
        if getattr(self, "trainer_", None) is None:
            self.trainer_ = Trainer(
                self.model, self.train, images, self.directory, self.engine, self.hooks,
                seed=self.seed, workers=self.workers,
            )  # fmt: skip
            if resume:
                self.trainer_.resume()
        return self.trainer_

    def fit(self, images: ImageSet, resume: bool = False) -> AutoencoderEncoder:
        """Train to ``train.epochs``; then ``result_`` holds the model and its last evaluation, ``module_`` the
        autoencoder in eval mode."""
        trainer = self.trainer(images, resume)
        trainer.fit()
        self.result_ = trainer.result()
        self.module_, self.engine = self.result_.autoencoder, trainer.engine
        self.epoch_, self.image_size_ = trainer.epoch, images.image_size
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        return infer(self.module_, images, ("latents",), engine=self.engine).latents

    def save(self, directory: Path) -> None:
        """The weights alone, as an epoch's checkpoint keeps them, in ``directory``'s ``checkpoints/last.pt``."""
        state = weights_state(self.model, self.image_size_, self.epoch_, self.module_, heads={})
        torch_save_atomic(Path(directory) / LAST_CHECKPOINT, state)

    @classmethod
    def load(cls, directory: Path, device: str | torch.device = "cpu") -> AutoencoderEncoder:
        """The encoder whose last checkpoint ``directory`` holds (a run directory, or what :meth:`save` wrote)."""
        module, state = load_model(Path(directory) / LAST_CHECKPOINT, device)
        settings = checkpoint_model_config(Path(directory) / LAST_CHECKPOINT, state)
        encoder = cls(settings, TrainConfig(), directory=directory)
        encoder.module_, encoder.epoch_, encoder.image_size_ = module, state["epoch"], state["image_size"]
        encoder.engine = Engine(torch.device(device))
        return encoder
