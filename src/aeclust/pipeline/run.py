"""``run(config)``: data → train → latents → cluster → metrics and files, in one run directory."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from aeclust.budget.clock import BudgetClock
from aeclust.budget.costs import (
    OFF_PACE_SHARE,
    midway_epoch,
    off_pace,
    plan_budget,
    projected_seconds,
    replan_after_first_epoch,
    replan_midway,
)
from aeclust.budget.measure import measure_speeds
from aeclust.budget.plan import BudgetPlan
from aeclust.cluster.choose_k import K_CRITERIA, check_k_range
from aeclust.cluster.clusterers import CLUSTERERS
from aeclust.cluster.features import LATENT_MODES, SCALINGS
from aeclust.cluster.reduce import EMBEDDERS, REDUCERS
from aeclust.cluster.stage import Clustering, ClusteringStage, cluster_latents, embedded_latents
from aeclust.config import AUTO_K, RunConfig, setting_text, with_settings
from aeclust.data import ImageSet, load_images
from aeclust.encoders.autoencoder import (
    SCHEDULES,
    AutoencoderEncoder,
    Evaluation,
    Trainer,
    check_views,
    encode_splits,
    load_model,
)
from aeclust.encoders.records import EpochRecord
from aeclust.errors import ConfigError, RunDirError, unknown_name
from aeclust.metrics import accuracy_of, clustering_scores
from aeclust.nn.models import ARCHITECTURES
from aeclust.pipeline.callbacks import RunCallbacks
from aeclust.pipeline.rundir import RECLUSTER_COPIES, RECLUSTER_NEEDS, RunDir
from aeclust.refine.scan import BALANCES, refiner_for, resolve_balance
from aeclust.runtime.engine import Engine, resolve_device, set_threads, start_engine, torchrun_world
from aeclust.runtime.progress import format_duration, log

MACHINE_SETTINGS = ("threads", "device", "workers")  # where a run runs: a resumed run may change them
BALANCE_WORDS = {"uniform": "towards equal shares", "prior": "at the clustering stage's shares"}


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    train_clusters: np.ndarray
    history: list = field(default_factory=list)


def check_names(config: RunConfig) -> None:
    """Refuse an unknown architecture or stage name before any data is loaded or any epoch trained."""
    cluster = config.cluster
    for kind, name, known in (
        ("architecture", config.model.arch, ARCHITECTURES),
        ("latent mode", cluster.latent, LATENT_MODES),
        ("scaling", cluster.scaling, SCALINGS),
        ("schedule", config.train.schedule, SCHEDULES),
        ("reducer", cluster.reducer, REDUCERS),
        ("embedder", cluster.embedder, EMBEDDERS),
        ("clusterer", cluster.clusterer, CLUSTERERS),
        ("k criterion", cluster.k_criterion, K_CRITERIA),
        ("refine balance", config.refine.balance, BALANCES),
    ):
        if name not in known:
            raise unknown_name(kind, name, list(known))


def check_config(config: RunConfig, images: ImageSet) -> None:
    n = len(images.train_images)
    where = images.source or images.name
    if config.cluster.k == AUTO_K:  # the per-epoch history chooses k on the val images, the run on the train
        check_k_range(config.cluster.k_min, config.cluster.k_max, n, where, "train images")
        if images.has_val:
            check_k_range(config.cluster.k_min, config.cluster.k_max, len(images.val_images), where, "val images")
    elif not 2 <= config.cluster.k <= n:
        raise ConfigError(f"{where}: k={config.cluster.k} must be between 2 and the number of train images ({n})")
    if images.has_val and config.cluster.k > len(images.val_images):
        raise ConfigError(
            f"{where}: k={config.cluster.k} must not exceed the number of val images ({len(images.val_images)})"
        )
    refine = config.refine
    if refine.epochs < 0 or refine.neighbours < 1 or refine.batch_size < 1 or refine.anchors_per_epoch < 1:
        raise ConfigError(
            f"refine epochs={refine.epochs}, neighbours={refine.neighbours}, batch size={refine.batch_size}, "
            f"anchors per epoch={refine.anchors_per_epoch}: expected epochs >= 0 and the others >= 1"
        )
    if refine.self_label_epochs < 0 or not 0 < refine.confident_share <= 1:
        raise ConfigError(
            f"refine self-label epochs={refine.self_label_epochs}, confident share={refine.confident_share}: "
            "expected self-label epochs >= 0 and 0 < confident share <= 1"
        )
    check_views(config.model)
    train = config.train
    non_negative = (
        train.mse_every, train.val_every, train.provisional_epochs, *train.replanned_after, *train.epochs_before_replan
    )  # fmt: skip
    replans = (
        f"replanned_after={setting_text(train.replanned_after)}, "
        f"epochs_before_replan={setting_text(train.epochs_before_replan)}"
    )
    if train.epochs < 0 or train.batch_size < 1 or train.lr <= 0 or min(non_negative) < 0:
        raise ConfigError(
            f"epochs={train.epochs}, batch size={train.batch_size}, lr={train.lr}, mse_every={train.mse_every}, "
            f"val_every={train.val_every}, provisional_epochs={train.provisional_epochs}, {replans}: "
            "expected epochs >= 0, batch size >= 1, lr > 0 and the others >= 0"
        )
    after = list(train.replanned_after)
    if len(after) != len(train.epochs_before_replan) or after != sorted(set(after)) or 0 in after:
        raise ConfigError(
            f"{replans}: expected as many of each, and the epochs after which the run planned again rising from 1"
        )
    if config.budget_seconds < 0:
        raise ConfigError(f"budget {config.budget_seconds}s: expected a positive time, or 0 for none")


def prepare_run_dir(
    config: RunConfig,
    out: str | Path | None,
    resume: bool,
    force: bool,
    machine: dict[str, Any] | None = None,
    hold: contextlib.ExitStack | None = None,
) -> tuple[RunConfig, Path]:
    """Pick the run directory and settle the configuration: a resumed run keeps the one it was started with.

    Given ``hold``, this process holds the directory (:meth:`RunDir.held`) until ``hold`` closes, from before
    anything in it is read or replaced: a directory another process still writes is refused."""
    if resume:
        run_dir = RunDir(out if out is not None else Path())
        if out is None or not run_dir.config.is_file():
            where = run_dir.path if out is not None else None  # an API call without ``out`` names no directory
            raise RunDirError(
                f"{where}: expected a run directory holding {run_dir.config.name} to resume, found none"
            )
        if hold is not None:
            hold.enter_context(run_dir.held())
        saved = run_dir.read_config()
        if config.train.epochs > saved.train.epochs:  # continuing a finished run for more epochs is allowed
            saved.train.epochs = config.train.epochs
        for name, value in (machine or {}).items():  # where it runs, free to differ from the first session's
            if name not in MACHINE_SETTINGS:
                raise ValueError(f"{name}: not a machine setting; expected one of {MACHINE_SETTINGS}")
            if value is not None:
                setattr(saved, name, value)
        return saved, run_dir.path
    if force and out is not None and Path(out).exists():
        run_dir = RunDir(out)
        if any(run_dir.path.iterdir()) and not run_dir.config.is_file():
            raise RunDirError(
                f"{run_dir.path}: --force replaces only an aeclust run directory; this one holds other files"
            )
        with run_dir.held() if hold is not None else contextlib.nullcontext():  # not a run still being written
            shutil.rmtree(run_dir.path)
        run_dir.path.mkdir(parents=True)
    else:
        run_dir = RunDir.create_new(out, config.model_name)
    if hold is not None:
        hold.enter_context(run_dir.held())
    return config, run_dir.path


def run(
    config: RunConfig,
    out: str | Path | None = None,
    *,
    images: ImageSet | None = None,
    resume: bool = False,
    force: bool = False,
    resume_machine: dict[str, Any] | None = None,
    started: float | None = None,
) -> RunResult:
    """Train, cluster and score one model; write everything into a new run directory (or resume one).

    A resumed run keeps the settings it was started with, except a longer ``config.train.epochs`` and, when
    given, ``resume_machine``'s (threads, device, workers: see :data:`MACHINE_SETTINGS`). Under torchrun every
    process calls this; they train together and only the main one writes. ``started`` (a ``time.perf_counter()``
    reading) is when the run's clock began, for its timings and ``config.budget_seconds``: by default, now; the
    command line passes the moment it started, so a budget counts the time spent importing too.
    """
    started = started if started is not None else time.perf_counter()
    # The main process holds the run directory from when it is chosen to the end of the run.
    with contextlib.ExitStack() as hold:
        holding = hold if torchrun_world()[0] == 0 else None
        if resume:  # the saved settings say which data to load
            config, run_dir = prepare_run_dir(config, out, resume, force, resume_machine, holding)
        check_names(config)
        engine = start_engine(config.device)
        timings: dict[str, float] = {}
        mark = time.perf_counter()
        images = images if images is not None else load_in_turn(config, engine)
        timings["load_seconds"] = time.perf_counter() - mark
        check_config(config, images)
        plan = None
        # A plan made again after the first epoch starts from the settings as given (a resumed run's: as planned).
        unplanned = config
        if config.budget_seconds > 0 and not resume:
            plan = plan_run(config, images, engine, time.perf_counter() - started)
            config = plan.apply(config)
        if not resume:  # only now, so a bad input leaves no empty run directory behind and --force removes nothing
            if engine.is_main:
                config, run_dir = prepare_run_dir(config, out, resume, force, hold=holding)
            run_dir = Path(engine.broadcast(str(run_dir) if engine.is_main else None))
        if engine.is_main:
            write_settings(RunDir(run_dir), config, plan)
        log(
            f"run {run_dir} on {engine.describe()}: model {config.model_name}, "
            f"{len(images.train_images)} train images from {images.source}"
        )

        callbacks = RunCallbacks(config, run_dir)
        encoder = run_encoder(config, run_dir, engine, callbacks)
        trainer = encoder.trainer(images, resume)
        clock = None
        if config.budget_seconds > 0:
            plan = plan if plan is not None else read_plan(RunDir(run_dir))
            # A resumed run's earlier sessions: their epochs as the history timed them, and the measuring before.
            earlier = sum(r.train_seconds + r.eval_seconds for r in trainer.history) + plan.speeds.measuring_seconds
            clock = callbacks.clock = BudgetClock(config.budget_seconds, started, earlier if resume else 0.0)

            def replan(current: RunConfig, epoch: int, train_seconds: float) -> RunConfig:
                nonlocal plan
                if epoch == 1:
                    plan = replan_run(plan, unplanned, images, engine, train_seconds, clock.spent() - train_seconds)
                elif epoch == midway_epoch(plan) or runs_off_pace(
                    plan, unplanned, images, engine, trainer.history, train_seconds, clock
                ):
                    plan = replan_run_midway(plan, unplanned, images, engine, trainer.history, train_seconds, clock)
                else:
                    return current
                # Applied, as the first plan was, to the settings as given: what the first plan chose and this one does
                # not (the clusterer in place of "auto") goes back to the given.
                current = plan.apply(unplanned)
                if engine.is_main:  # a run stopped after this resumes the new plan
                    write_settings(RunDir(run_dir), current, plan)
                return current

            callbacks.replanner = replan
        mark = time.perf_counter()
        encoder.fit(images)
        config = callbacks.config  # as planned again after the first epoch
        timings["this_session_train_seconds"] = time.perf_counter() - mark
        log("clustering train and val latents")
        mark = time.perf_counter()
        # The last epoch's history step encoded both sets and clustered val with this very model and seed;
        # a run resumed after its last epoch has no such step, so it encodes afresh (in fit).
        trained = encoder.result_
        timings["latent_seconds"] = time.perf_counter() - mark
        timings["train_seconds"] = sum(r.train_seconds for r in trained.history)
        timings["epoch_eval_seconds"] = sum(r.eval_seconds for r in trained.history)
        metrics: dict = {
            "model": config.model_name, "seed": config.seed, "k": config.cluster.k, "epochs": trained.epoch
        }  # fmt: skip
        if clock is not None:
            metrics["budget"] = plan.to_dict()
        result = cluster_refine_and_write(
            run_dir, config, images, trained.autoencoder, trained.evaluation, metrics, timings, started,
            resume_refinement=resume, engine=engine, clock=clock,
        )  # fmt: skip
        result.history = trained.history
        return result


def run_encoder(config: RunConfig, run_dir: Path, engine: Engine, callbacks: RunCallbacks) -> AutoencoderEncoder:
    """``config``'s autoencoder as a run trains it in ``run_dir``, on this machine's threads, with ``callbacks``."""
    set_threads(config.threads)
    return AutoencoderEncoder(
        config.model, config.train, directory=run_dir, seed=config.seed, workers=config.workers, engine=engine,
        hooks=callbacks.training_hooks(),
    )  # fmt: skip


def run_trainer(config: RunConfig, images: ImageSet, run_dir: Path, engine: Engine | None = None) -> Trainer:
    """The training of ``config``'s autoencoder as a run makes it in ``run_dir``: its history written, its val images
    clustered as the run clusters them, its last latents written to ``arrays/`` (a run adds its budget)."""
    engine = engine if engine is not None else start_engine(config.device)
    return run_encoder(config, run_dir, engine, RunCallbacks(config, run_dir)).trainer(images)


def plan_run(config: RunConfig, images: ImageSet, engine: Engine, spent_seconds: float) -> BudgetPlan:
    """Measure this run's speed here and plan its epochs to end within ``config.budget_seconds``."""
    log(f"measuring this run's speed to plan its budget of {format_duration(config.budget_seconds)}")
    speeds = measure_speeds(config, images, engine)
    spent_seconds += speeds.measuring_seconds
    plan = plan_budget(config.budget_seconds, config, *image_counts(images), speeds, spent_seconds)
    plan = engine.broadcast(plan if engine.is_main else None)  # under torchrun every process follows main's plan
    log(plan.describe())
    return plan


def replan_run(
    plan: BudgetPlan, config: RunConfig, images: ImageSet, engine: Engine, epoch_seconds: float, spent_seconds: float
) -> BudgetPlan:
    """``plan`` made again from the first epoch's real time (see :func:`replan_after_first_epoch`)."""
    again = replan_after_first_epoch(plan, config, *image_counts(images), epoch_seconds, spent_seconds)
    return adopted(plan, again, engine, "from the first epoch", "the first plan")


def replan_run_midway(
    plan: BudgetPlan,
    config: RunConfig,
    images: ImageSet,
    engine: Engine,
    history: Sequence[EpochRecord],
    train_seconds: float,
    clock: BudgetClock,
) -> BudgetPlan:
    """``plan`` made again from the epochs trained so far (see :func:`aeclust.budget.costs.replan_midway`): the last
    one's ``train_seconds``, and those ``history`` holds of the others. An epoch's training is timed by the epochs since
    the plan before, not all of them, so that a machine that sped up or slowed down part-way through is planned for
    as it now runs (docs/results.md, section 29); the first epoch's, slower than the rest (reading the images,
    warming up), is never counted. An epoch's history is timed by all of them, since its MSE pass comes only every
    so many epochs and a few would miscount it."""
    pace = epoch_pace(plan, history, train_seconds)
    again = replan_midway(plan, config, *image_counts(images), *pace, clock.spent())
    return adopted(plan, again, engine, f"after epoch {pace[0]}", "the plan before")


def epoch_pace(plan: BudgetPlan, history: Sequence[EpochRecord], train_seconds: float) -> tuple[int, float, float]:
    """The epochs done (the last one's ``train_seconds`` and those ``history`` holds of the others), an epoch's mean
    training seconds since the plan before, and an epoch's mean history seconds (see :func:`replan_run_midway`)."""
    since = max((1, *plan.replanned_after))  # the epoch after which the plan before was made
    mean_train = statistics.mean([record.train_seconds for record in history[since:]] + [train_seconds])
    mean_history = statistics.mean(record.eval_seconds for record in history) if history else 0.0
    return len(history) + 1, mean_train, mean_history


def runs_off_pace(
    plan: BudgetPlan,
    config: RunConfig,
    images: ImageSet,
    engine: Engine,
    history: Sequence[EpochRecord],
    train_seconds: float,
    clock: BudgetClock,
) -> bool:
    """Whether the epochs' pace since the plan before says the run would end further from where ``plan`` aims than
    :data:`aeclust.budget.costs.OFF_PACE_SHARE` of its budget (see :func:`aeclust.budget.costs.off_pace`). The main
    process decides, so that every process plans again after the same epochs."""
    off = None
    if engine.is_main:
        epochs_done = len(history) + 1
        # The first epoch has a plan of its own. After the last, a run ending early still has time for more epochs.
        if epochs_done > 1:
            pace = epoch_pace(plan, history, train_seconds)
            projected = projected_seconds(plan, config, *image_counts(images), *pace, clock.spent())
            off = off_pace(plan, projected)
            if off:
                log(
                    f"the epochs' pace says the run would end after about {format_duration(projected)}, more than "
                    f"{OFF_PACE_SHARE:.0%} of its budget of {format_duration(plan.budget_seconds)} from where its plan "
                    "aims"
                )
    return bool(engine.broadcast(off))


def adopted(plan: BudgetPlan, again: BudgetPlan, engine: Engine, when: str, earlier: str) -> BudgetPlan:
    """The main process's new plan, taken by every process (each timed its own epochs; main decides), and said."""
    again = engine.broadcast(again if engine.is_main else None)
    epochs_before = "the same epochs" if again.epochs == plan.epochs else f"{plan.epochs} epochs"
    log(f"planned again {when}: {again.describe()}; {earlier} had {epochs_before}")
    return again


def image_counts(images: ImageSet) -> tuple[int, int]:
    """The train and val images a budget plans for."""
    return len(images.train_images), len(images.val_images) if images.has_val else 0


def write_settings(directory: RunDir, config: RunConfig, plan: BudgetPlan | None) -> None:
    """``config.json`` and, for a budgeted run, ``budget.json``: what a resumed run continues with."""
    directory.write_config(config)
    if plan is not None:
        plan.save(directory.budget)


def read_plan(directory: RunDir) -> BudgetPlan:
    if not directory.budget.is_file():
        raise RunDirError(f"{directory.path}: a run with a budget, but its plan ({directory.budget.name}) is missing")
    return BudgetPlan.load(directory.budget)


def load_in_turn(config: RunConfig, engine: Engine) -> ImageSet:
    """The run's images. Under torchrun the main process loads them first, decoding a folder or archive into the
    store, and the others then map its store, where each would otherwise decode the same images at once."""
    if engine.distributed and not engine.is_main:
        engine.barrier()
    images = load_images(config.data, image_size=config.image_size)
    if engine.distributed and engine.is_main:
        engine.barrier()
    return images


def placed_by_train_cuts(val_latents: np.ndarray, stage: ClusteringStage, config: RunConfig) -> Clustering:
    """The val images placed in the train images' clusters by the fitted clustering ``stage``, as `aeclust predict`
    places new ones: for a clusterer that places other points itself (whitened-kmeans).

    Val cut on its own, as the study cuts it, went astray under whitened-kmeans: a 16-dimension whitening fitted to
    500 points gave 0.670 where the train images' cut gave 0.828 (docs/results.md, section 23), and the refinement's
    val is placed by the train's clusters too.
    """
    features, embedding = embedded_latents(val_latents, config.cluster, config.seed)
    return Clustering(features, embedding, stage.predict(val_latents))


@dataclass
class RunClusters:
    """The clusters a run's stages hand on: the train images' (and val's), and the fitted clustering stage."""

    config: RunConfig  # with the k and the clusterer the stage chose, where the settings left them to it
    initial: np.ndarray  # the clustering stage's train clusters, in every process
    train: Clustering | None  # None outside the main process
    val: Clustering | None
    stage: ClusteringStage | None  # the main process's fitted stage


def cluster_stage(
    config: RunConfig, images: ImageSet, evaluation: Evaluation, engine: Engine, metrics: dict, timings: dict
) -> RunClusters:
    """The clustering stage on the train latents (k chosen first where the settings leave it to the data), and the
    val images cut into the same k by the same clusterer, or placed in the train's clusters where the clusterer places
    other points itself. The main process clusters; every process gets the train clusters."""
    mark = time.perf_counter()
    train_clustering = val_clustering = selection = stage = None
    if engine.is_main:
        stage = ClusteringStage(config.cluster, seed=config.seed).fit(evaluation.train_latents)
        train_clustering = stage.clustering_
        timings |= {f"train_{part}_step_seconds": seconds for part, seconds in train_clustering.seconds.items()}
        val_clustering, selection = evaluation.val_clustering, train_clustering.k_selection
    timings["cluster_train_seconds"] = time.perf_counter() - mark
    if selection is not None:
        log(f"chose k={selection.chosen} by {selection.criterion}: {selection.reason}")
        metrics["k"] = selection.chosen
        metrics["k_selection"] = selection.to_dict()
        val_clustering = None  # val is cut into the train's k (the history's evaluation chose its own k on val)
    if train_clustering is not None and train_clustering.clusterer_choice is not None:
        choice = train_clustering.clusterer_choice
        log(f"clustered by {choice.chosen}: {choice.reason}")
        metrics["clusterer_choice"] = choice.to_dict()
        val_clustering = None  # val is cut by the train's choice (the history's evaluation chose on val)
    chosen_k, initial_clusters, chosen_clusterer = engine.broadcast(
        (
            selection.chosen if selection is not None else config.cluster.k,
            train_clustering.clusters,
            train_clustering.clusterer or config.cluster.clusterer,
        )
        if engine.is_main
        else None
    )
    # From here the clusterer is the one "auto" chose: val is cut by it, and the refiner holds its sizes by it.
    config = replace(config, cluster=replace(config.cluster, k=chosen_k, clusterer=chosen_clusterer))
    if images.has_val and engine.is_main and stage.places_others:
        val_clustering = placed_by_train_cuts(evaluation.val_latents, stage, config)
    elif images.has_val and val_clustering is None and engine.is_main:
        val_clustering = cluster_latents(evaluation.val_latents, config.cluster, config.seed)
    return RunClusters(config, initial_clusters, train_clustering, val_clustering, stage)


def refine_stage(
    clusters: RunClusters,
    images: ImageSet,
    model: nn.Module,
    evaluation: Evaluation,
    run_dir: Path,
    engine: Engine,
    metrics: dict,
    timings: dict,
    resume: bool,
    clock: BudgetClock | None,
) -> RunClusters:
    """``clusters`` refined by neighbour consistency (and self-labelling) on the images, as the run's settings say;
    every process refines, each on its share of every batch."""
    config = clusters.config
    if images.train_labels is not None and engine.is_main:
        metrics["train_accuracy_before_refine"] = accuracy_of(images.train_labels, clusters.train.clusters)
    if clusters.val is not None:
        metrics["val_accuracy_before_refine"] = accuracy_of(images.val_labels, clusters.val.clusters)
    balance = metrics["refine_balance"] = resolve_balance(config.refine.balance, config.cluster.clusterer)
    log(
        f"refining the {config.cluster.k} clusters: {config.refine.epochs} epochs of neighbour consistency, "
        f"{config.refine.self_label_epochs} of self-labelling, sizes held {BALANCE_WORDS[balance]}"
    )
    mark = time.perf_counter()
    refiner = refiner_for(model, images, config, clusters.initial, run_dir, evaluation.epoch, engine)
    if resume and refiner.resume():
        log(f"resuming the refinement after its epoch {refiner.epoch}")
    refined = refiner.fit(log if clock is None else lambda line: log(f"{line}  {clock.describe()}"))
    timings["refine_seconds"] = time.perf_counter() - mark
    timings |= {f"refine_{part}_seconds": seconds for part, seconds in refiner.seconds.items()}
    train = Clustering(refined.train_features, refined.train_features, refined.train_clusters)
    val = clusters.val
    if refined.val_clusters is not None:
        val = Clustering(refined.val_features, refined.val_features, refined.val_clusters)
    return replace(clusters, train=train, val=val)


def write_run(
    directory: RunDir,
    clusters: RunClusters,
    images: ImageSet,
    evaluation: Evaluation,
    metrics: dict,
    timings: dict,
    started: float,
    clock: BudgetClock | None,
) -> None:
    """Score the clusters and write prediction.csv, arrays/, centres.npz (where no refined head will place new
    images) and metrics.json."""
    config, train, val = clusters.config, clusters.train, clusters.val
    arrays = {"train_latents": evaluation.train_latents}
    if images.has_val:
        arrays["val_latents"] = evaluation.val_latents
    arrays |= {"train_embedding": train.embedding, "train_clusters": train.clusters}
    directory.write_prediction(images.ids(), train.clusters)
    metrics["cluster_sizes"] = np.bincount(train.clusters, minlength=config.cluster.k).tolist()
    if images.train_labels is not None:
        metrics["train_accuracy"] = accuracy_of(images.train_labels, train.clusters)
        metrics["train_scores"] = clustering_scores(images.train_labels, train.clusters)
    if images.has_val:
        arrays |= {"val_embedding": val.embedding, "val_clusters": val.clusters}
        metrics["val_accuracy"] = accuracy_of(images.val_labels, val.clusters)
        metrics["val_scores"] = clustering_scores(images.val_labels, val.clusters)
    for name, array in arrays.items():
        directory.save_array(name, array)
    if config.refine.total_epochs == 0:  # where no refined head assigns new images, the clustering stage places them
        clusters.stage.save(directory.centres)
    timings["total_seconds"] = time.perf_counter() - started
    metrics["timings"] = timings
    if clock is not None:
        taken = clock.spent()
        metrics["budget"] |= {"taken_seconds": taken, "share_taken": taken / clock.budget_seconds}
        log(f"budget {format_duration(clock.budget_seconds)}: took {format_duration(taken)}")
    metrics["class_names"] = images.class_names
    directory.write_metrics(metrics)


def cluster_refine_and_write(
    run_dir: Path,
    config: RunConfig,
    images: ImageSet,
    model: nn.Module,
    evaluation: Evaluation,
    metrics: dict,
    timings: dict[str, float],
    started: float,
    *,
    resume_refinement: bool = False,
    engine: Engine | None = None,
    clock: BudgetClock | None = None,
) -> RunResult:
    """The end of every run, shared by :func:`run` and :func:`recluster`: the clustering stage
    (:func:`cluster_stage`), the refinement where the settings ask for one (:func:`refine_stage`), and the run's
    files (:func:`write_run`).

    ``evaluation`` holds the trained model's latents (and, when it has one, a val clustering with this
    configuration); ``metrics`` and ``timings`` are what the caller has recorded so far. Under torchrun the main
    process clusters and writes; every process refines. A budgeted run's ``clock`` adds the time left to the
    refinement's lines and the time taken to ``metrics["budget"]``.
    """
    engine = engine if engine is not None else start_engine(config.device)
    metrics["train_mse"] = evaluation.train_mse
    if images.has_val:
        metrics["val_mse"] = evaluation.val_mse
    clusters = cluster_stage(config, images, evaluation, engine, metrics, timings)
    if clusters.config.refine.total_epochs > 0:
        clusters = refine_stage(
            clusters, images, model, evaluation, run_dir, engine, metrics, timings, resume_refinement, clock
        )
    if not engine.is_main:  # the others have refined with it; the main one scores and writes
        return RunResult(run_dir, metrics, clusters.train.clusters if clusters.train else clusters.initial)
    write_run(RunDir(run_dir), clusters, images, evaluation, metrics, timings, started, clock)
    return RunResult(run_dir, metrics, clusters.train.clusters)


RECLUSTER_SECTIONS = ("cluster.", "refine.")


def recluster(
    run_dir: str | Path,
    k: int,
    out: str | Path | None = None,
    *,
    k_range: tuple[int, int] | None = None,
    refine_epochs: int | None = None,
    settings: Sequence[str] = (),
    images: ImageSet | None = None,
    device: str | None = None,
) -> RunResult:
    """Cut a finished run's images into ``k`` clusters (:data:`AUTO_K`: chosen from the data) without training the
    autoencoder again, in a new run directory (default: beside the source, named ``SOURCE-kK``).

    ``settings`` (``section.key=value``) change how the images are clustered and refined: only the ``cluster`` and
    ``refine`` sections, since the model is not trained again.

    The source run is only read. Its latents are read back from ``arrays/`` (encoded again from
    ``checkpoints/last.pt`` when they are missing); the clusters are refined again as its settings say, or for
    ``refine_epochs``. The new directory holds the source's history and last checkpoint, so it reports like a run.
    """
    started = time.perf_counter()
    source = RunDir(run_dir).check_finished(RECLUSTER_NEEDS)
    with contextlib.ExitStack() as hold:
        # Held to the end: the latents are copied file to file into the new run, read from the source as they go.
        hold.enter_context(source.read_held())
        config = source.read_config()
        trained = [item for item in settings if not item.startswith(RECLUSTER_SECTIONS)]
        if trained:
            raise ConfigError(
                f"{', '.join(trained)}: recluster changes only cluster.* and refine.* settings; the model is not "
                "trained again (start a new run to change the others)"
            )
        config = with_settings(config, list(settings))
        config.budget_seconds = 0.0  # the source's training was budgeted; re-cutting it is not
        config.cluster.k = k
        if k_range is not None:
            config.cluster.k_min, config.cluster.k_max = k_range
        if refine_epochs is not None:
            config.refine.epochs = refine_epochs
        if device is not None:
            config.device = device
        check_names(config)
        source_metrics = source.read_metrics()
        timings: dict[str, float] = {}
        mark = time.perf_counter()
        images = images if images is not None else load_images(config.data, image_size=config.image_size)
        timings["load_seconds"] = time.perf_counter() - mark
        check_config(config, images)
        set_threads(config.threads)
        engine = Engine(resolve_device(config.device))  # one process: re-cutting is a short job
        model, checkpoint = load_model(source.last_checkpoint, engine.device)
        mark = time.perf_counter()
        epoch = checkpoint["epoch"]
        evaluation = _saved_latents(source, images, source_metrics, epoch)
        evaluation = evaluation or _encode_again(model, images, epoch, engine)
        timings["latent_seconds"] = time.perf_counter() - mark

        default_out = source.path.with_name(f"{source.path.name}-k{k or 'auto'}")
        target = RunDir.create_new(out if out is not None else default_out, config.model_name)
        hold.enter_context(target.held())
        target.write_config(config)
        target.copy_from(source, RECLUSTER_COPIES)
        log(f"recluster {source.path} into {target.path}: k {k or 'auto'}, {len(images.train_images)} train images")
        metrics: dict = {
            "model": config.model_name, "seed": config.seed, "k": k, "epochs": evaluation.epoch,
            "reclustered_from": str(source.path),
        }  # fmt: skip
        return cluster_refine_and_write(
            target.path, config, images, model, evaluation, metrics, timings, started, engine=engine
        )


def _encode_again(model: nn.Module, images: ImageSet, epoch: int, engine: Engine) -> Evaluation:
    log("encoding the images again (the run's saved latents are missing or do not fit its data)")
    return encode_splits(model, images, epoch, engine)


def _saved_latents(source: RunDir, images: ImageSet, metrics: dict, epoch: int) -> Evaluation | None:
    """The latents a finished run saved, when they and its MSEs are all there for these images; else None."""
    counts = {"train": len(images.train_images)}
    if images.has_val:
        counts["val"] = len(images.val_images)
    loaded = {}
    for split, count in counts.items():
        name = f"{split}_latents"
        if not source.array(name).is_file() or f"{split}_mse" not in metrics:
            return None
        latents = source.load_array(name, mmap=True)  # copied file to file into the new run, never held whole
        if latents.ndim != 4 or len(latents) != count:
            return None
        loaded[split] = latents
    val_mse = metrics.get("val_mse") if images.has_val else None
    return Evaluation(epoch, loaded["train"], metrics["train_mse"], loaded.get("val"), val_mse)
