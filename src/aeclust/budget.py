"""``--budget``: a run planned from its own measured speed, so that it ends within a given time.

Before training, the run times its own first steps on this machine and device (a few training batches, a few
refinement batches, an encoding pass, a clustering of a sample) with a throwaway copy of its model, then
:func:`plan_budget` sets what grows with time: the training epochs (and the one-cycle schedule over them, which
is planned from the epochs), how often the history measures the train MSE, and, for budgets too short to hold
it, the refinement; a plan that trains long enough clusters on whitened dimensions instead of refining
(:func:`whitens_instead_of_refining`). After the first epoch, :func:`replan_after_first_epoch` plans again from
that epoch's real time: a few steps timed while the machine was briefly slower (or faster) than it then runs would
otherwise set every epoch after them (docs/results.md, sections 19–20); and a third of the way through,
:func:`replan_midway` plans the rest from the epochs' own mean time, and again two thirds and five sixths of the way,
each from the epochs since the plan before, since later epochs drift from the first's and a machine's speed can change
part-way through (sections 24, 25 and 29). The plan is written into the run's settings (``config.json``) and
``budget.json``, so a resumed run continues the same plan and the same seed with the same plan gives the same
clusters; ``budget.json`` also lists the settings that repeat the plan without measuring.

What does not grow: the model's width and its views' size. Wider models and full-size views cost more per
epoch than they gave back in accuracy within the times measured (docs/results.md, sections 11–12); epochs are
what improved every set (section 13). At 20 minutes twice the width, at half the epochs, was level on one set and
ahead on another by one seed's spread (section 23), and at an hour its features were the default's (a linear probe
of 0.920 against 0.918, section 25). Where it refines, the refinement
stays at its configured epochs: 6 epochs gave no more than 3 (sections 7 and 21), and self-labelling lowered
accuracy (section 8).
"""

from __future__ import annotations

import json
import math
import re
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from aeclust.augment import contrastive_view
from aeclust.cluster import WHITENED_KMEANS, cluster_latents
from aeclust.config import AUTO_K, RefineConfig, RunConfig, read_replans, setting_text
from aeclust.data import ImageSet
from aeclust.data.batches import images_at
from aeclust.engine import Engine
from aeclust.errors import ConfigError
from aeclust.infer import infer
from aeclust.io import torch_save_atomic, write_text_atomic
from aeclust.loop import run_epoch, share_of_batch
from aeclust.models import create_autoencoder
from aeclust.neighbours import nearest_neighbours
from aeclust.objectives import NeighbourConsistencyObjective
from aeclust.progress import format_duration
from aeclust.refine import ClusterModel

# The plan aims to end here, as a share of the budget: the rest absorbs what measuring a few steps cannot see
# (a step slower in a later epoch, the machine's other work, writing the run's files). The estimates came within
# 4 % of the time taken on the embedded set (docs/results.md, section 19).
TARGET_SHARE = 0.95
# The history's train-MSE passes may take this share of the training time: the history's curve needs 10 or so
# points, not one per epoch of a 300-epoch run.
HISTORY_SHARE = 0.05
HISTORY_POINTS = 20  # MSE points wanted when the share allows them
# The refinement may take at most this share of the budget; shorter budgets refine for fewer epochs, or none.
REFINE_SHARE = 0.25
SAMPLE = 2000  # images in the encoding and clustering samples
WARMUP_STEPS, TIMED_STEPS = 1, 5
# Neighbour search above the exact limit (a faiss index): seconds per image, measured at a million images on
# this project's 2-core machine (docs/results.md, section 18). A GPU is faster; the plan then has time to spare.
APPROXIMATE_SEARCH_SECONDS_PER_IMAGE = 4.0e-4

# A plan long enough to show its encoder this many images (epochs × train images) clusters by WHITENED_CLUSTERER
# and does not refine: by then k-means on whitened dimensions beats the refinement, which pulls every start back to
# what the images' nearest neighbours agree on (docs/results.md, section 22). Shorter plans refine as before.
WHITEN_FROM_IMAGES = 200_000
WHITENED_CLUSTERER = WHITENED_KMEANS

# What a plan sets, as --set names them. A plan also sets cluster.clusterer, but only where it was left to aeclust
# ("auto"), so a clusterer the user chose is no plan's to change.
PLANNED_SETTINGS = (
    "train.epochs", "train.mse_every", "refine.epochs", "train.provisional_epochs", "train.replanned_after",
    "train.epochs_before_replan",
)  # fmt: skip
# The run plans once more after each of these shares of its epochs, from their real time (an epoch's time drifts
# from the first's: docs/results.md, sections 22 and 24), where it has at least MIDWAY_FROM_EPOCHS. More than once,
# since a machine's speed can change part-way through (section 25: a run's epochs sped up by a fifth after its first
# midway plan); the last late, since a change after it goes uncorrected (section 29: epochs a quarter quicker after
# two thirds of a run ended it at 0.88 of its budget), but not later, since each plan from then on counts fewer
# epochs' time and the epochs left to add or drop are fewer.
MIDWAY_SHARES = (1 / 3, 2 / 3, 5 / 6)
MIDWAY_FROM_EPOCHS = 6

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_duration(text: str) -> float:
    """Seconds in a duration as the user writes it: ``90s``, ``5m``, ``2h``, ``1h30m``."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(number + unit for number, unit in parts) != cleaned:
        raise ConfigError(f"budget: expected a duration such as 90s, 5m, 1h30m or 2h, found {text!r}")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ConfigError(f"budget: expected a duration longer than nothing, found {text!r}")
    return seconds


@dataclass
class Speeds:
    """What a run measured of itself before planning."""

    train_step_seconds: float  # one training batch (batch_size images, every objective, forward and backward)
    refine_step_seconds: float  # one refinement batch (anchors and partners)
    full_pass_images_per_second: float  # encoded and decoded, as the history's MSE needs
    encode_images_per_second: float  # encoded only, as the refinement needs
    cluster_seconds: float  # the clustering stage on ``cluster_sample`` latents
    cluster_sample: int
    val_cluster_seconds: float  # the clustering stage on ``val_sample`` latents (as many as val has, or the sample)
    val_sample: int
    neighbour_seconds: float  # exact neighbour search among ``cluster_sample`` points
    checkpoint_seconds: float  # writing one epoch's checkpoints
    measuring_seconds: float  # how long measuring all this took

    def at_pace(self, pace: float) -> Speeds:
        """These speeds on a machine ``pace`` times as slow (0.5: twice as quick) as when they were measured: a
        machine that sped up or slowed down does so for every stage, not only the training steps it was seen in."""
        return replace(
            self,
            train_step_seconds=self.train_step_seconds * pace, refine_step_seconds=self.refine_step_seconds * pace,
            full_pass_images_per_second=self.full_pass_images_per_second / pace,
            encode_images_per_second=self.encode_images_per_second / pace,
            cluster_seconds=self.cluster_seconds * pace, val_cluster_seconds=self.val_cluster_seconds * pace,
            neighbour_seconds=self.neighbour_seconds * pace, checkpoint_seconds=self.checkpoint_seconds * pace,
        )  # fmt: skip


@dataclass
class BudgetPlan:
    """How a run spends its budget: the settings it sets and what each stage is expected to take."""

    budget_seconds: float
    speeds: Speeds
    epochs: int
    mse_every: int
    refine_epochs: int
    estimate: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    # Once planned again after the first epoch: a batch's time as that epoch took it (0.0: not yet), and the epochs
    # the first plan gave, which laid out the first epoch's schedule, where the two plans differ (0: they agree).
    first_epoch_step_seconds: float = 0.0
    provisional_epochs: int = 0
    clusterer: str = ""  # the clusterer the plan chose in place of "auto" ("": none chosen)
    # Each time planned again midway (:func:`replan_midway`): after which epoch; the last time, a whole epoch's mean
    # time up to it; and each time, the epochs the plan before gave, which laid out the schedule up to it, where
    # they differ from the new plan's (0: they agree).
    replanned_after: tuple[int, ...] = ()
    midway_epoch_seconds: float = 0.0
    epochs_before_replan: tuple[int, ...] = ()

    def settings(self) -> list[str]:
        """The ``--set`` items that repeat this plan exactly, without measuring."""
        values = (
            self.epochs, self.mse_every, self.refine_epochs, self.provisional_epochs, self.replanned_after,
            self.epochs_before_replan,
        )  # fmt: skip
        chosen = [f"cluster.clusterer={self.clusterer}"] if self.clusterer else []
        return [f"{name}={setting_text(value)}" for name, value in zip(PLANNED_SETTINGS, values)] + chosen

    def apply(self, config: RunConfig) -> RunConfig:
        return replace(
            config,
            budget_seconds=self.budget_seconds,
            train=replace(
                config.train, epochs=self.epochs, mse_every=self.mse_every, provisional_epochs=self.provisional_epochs,
                replanned_after=self.replanned_after, epochs_before_replan=self.epochs_before_replan,
            ),  # fmt: skip
            refine=replace(config.refine, epochs=self.refine_epochs),
            cluster=replace(config.cluster, clusterer=self.clusterer or config.cluster.clusterer),
        )

    def describe(self) -> str:
        step = self.first_epoch_step_seconds or self.speeds.train_step_seconds
        timed = "in the first epoch" if self.first_epoch_step_seconds else "measured"
        if self.midway_epoch_seconds:
            epoch = self.replanned_after[-1]
            timed = f"in the first epoch; epochs took {self.midway_epoch_seconds:.1f}s up to {epoch}"
        clustering = f"clusters by {self.clusterer}" if self.clusterer else f"{self.refine_epochs} refinement epochs"
        return (
            f"budget {format_duration(self.budget_seconds)}: {self.epochs} epochs at about "
            f"{format_duration(self.estimate['training'] / max(1, self.epochs))} each, train MSE every "
            f"{self.mse_every}, {clustering}; expected to end after about "
            f"{format_duration(self.estimate['total'])} (a batch took {step:.2f}s {timed})"
        )

    def to_dict(self) -> dict:
        return {
            "budget_seconds": self.budget_seconds,
            "epochs": self.epochs,
            "mse_every": self.mse_every,
            "refine_epochs": self.refine_epochs,
            "settings": self.settings(),
            "estimate_seconds": self.estimate,
            "speeds": asdict(self.speeds),
            "first_epoch_step_seconds": self.first_epoch_step_seconds,
            "provisional_epochs": self.provisional_epochs,
            "clusterer": self.clusterer,
            "replanned_after": list(self.replanned_after),
            "midway_epoch_seconds": self.midway_epoch_seconds,
            "epochs_before_replan": list(self.epochs_before_replan),
        }

    @classmethod
    def from_dict(cls, values: dict) -> BudgetPlan:
        replans = read_replans(values)
        return cls(
            values["budget_seconds"], Speeds(**values["speeds"]), values["epochs"], values["mse_every"],
            values["refine_epochs"], dict(values["estimate_seconds"]),
            # A plan saved before plans were made again after the first epoch (or midway) was never made again; one
            # saved before plans chose a clusterer chose none.
            values.get("first_epoch_step_seconds", 0.0), values.get("provisional_epochs", 0),
            values.get("clusterer", ""), replans["replanned_after"], values.get("midway_epoch_seconds", 0.0),
            replans["epochs_before_replan"],
        )  # fmt: skip

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> BudgetPlan:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ConfigError(f"{path}: expected a budget plan (JSON), could not read it ({error})") from None


def _scaled(seconds: float, sample: int, count: int, exponent: float) -> float:
    return seconds * (count / max(1, sample)) ** exponent


def _cluster_exponent(config: RunConfig) -> float:
    """How the clustering stage's time grows with N: KernelPCA and t-SNE about as N², the others about as N."""
    cluster = config.cluster
    return 2.0 if cluster.reducer == "kpca" or cluster.embedder in ("tsne", "sklearn-tsne") else 1.0


def whitens_instead_of_refining(config: RunConfig, images_seen: int) -> bool:
    """Whether a plan whose encoder sees ``images_seen`` images clusters by :data:`WHITENED_CLUSTERER` without
    refining.

    Only for what it was measured on: two groups, the clusterer left to aeclust, on pooled latents with neither
    reducer nor embedder (the contrastive model's clustering), and a refinement of neighbour consistency alone
    (self-labelling left off).
    """
    cluster = config.cluster
    return (
        images_seen >= WHITEN_FROM_IMAGES
        and cluster.k == 2
        and cluster.clusterer == "auto"
        and cluster.reducer == "none"
        and cluster.embedder == "none"
        and config.refine.self_label_epochs == 0
    )


@dataclass
class Costs:
    """What each part of a run is expected to take here, from its measured speeds: a plan's arithmetic."""

    epoch_seconds: float  # one epoch's training
    mse_seconds: float  # the history's pass over every train image for the MSE
    per_epoch_seconds: float  # after every epoch: the checkpoints, and the val images encoded and clustered
    cluster_seconds: float  # at the end: the train images clustered and the val images cut by the train's k
    refine_epoch_seconds: float
    encode_seconds: float  # the train images encoded once
    search_seconds: float  # their neighbours found once
    final_encode_seconds: float  # train and val encoded after the refinement
    refine: RefineConfig

    @classmethod
    def of(cls, config: RunConfig, train_count: int, val_count: int, speeds: Speeds) -> Costs:
        train, refine = config.train, config.refine
        # Per image, not per batch: an epoch's last, smaller batch costs about its share of a full one.
        epoch_seconds = train_count / train.batch_size * speeds.train_step_seconds
        exponent = _cluster_exponent(config)
        val_cluster_seconds = _scaled(speeds.val_cluster_seconds, speeds.val_sample, val_count, exponent)
        per_epoch_seconds = speeds.checkpoint_seconds
        if val_count:
            per_epoch_seconds += val_count / speeds.full_pass_images_per_second + val_cluster_seconds
        cluster_seconds = _scaled(speeds.cluster_seconds, speeds.cluster_sample, train_count, exponent)
        exact_limit = refine.exact_search_limit
        if exact_limit is None or train_count <= exact_limit:
            search_seconds = _scaled(speeds.neighbour_seconds, speeds.cluster_sample, train_count, 2.0)
        else:
            search_seconds = train_count * APPROXIMATE_SEARCH_SECONDS_PER_IMAGE
        anchors = min(refine.anchors_per_epoch, train_count)
        return cls(
            epoch_seconds=epoch_seconds,
            mse_seconds=train_count / speeds.full_pass_images_per_second,
            per_epoch_seconds=per_epoch_seconds,
            cluster_seconds=cluster_seconds + val_cluster_seconds,
            refine_epoch_seconds=anchors / refine.batch_size * speeds.refine_step_seconds,
            encode_seconds=train_count / speeds.encode_images_per_second,
            search_seconds=search_seconds,
            final_encode_seconds=(train_count + val_count) / speeds.encode_images_per_second,
            refine=refine,
        )

    def refinement(self, epochs: int) -> float:
        """``epochs`` of neighbour consistency and the configured self-labelling, with their encodings."""
        refine = self.refine
        if epochs + refine.self_label_epochs == 0:
            return 0.0
        minings = 1 + (max(0, epochs - 1) if refine.remine_neighbours else 0)
        # Self-labelling epochs cost about what a consistency epoch does, plus a pass to pick the confident images.
        self_label = refine.self_label_epochs * (self.refine_epoch_seconds + self.encode_seconds)
        return (
            epochs * self.refine_epoch_seconds + minings * (self.encode_seconds + self.search_seconds)
            + self.final_encode_seconds + self_label
        )  # fmt: skip

    def refine_epochs_within(self, epochs: int, budget_seconds: float) -> int:
        """The most of ``epochs`` refinement epochs that :data:`REFINE_SHARE` of the budget holds."""
        while epochs > 0 and self.refinement(epochs) > REFINE_SHARE * budget_seconds:
            epochs -= 1
        return epochs


def plan_budget(
    budget_seconds: float,
    config: RunConfig,
    train_count: int,
    val_count: int,
    speeds: Speeds,
    spent_seconds: float,
    epochs_done: int = 0,
) -> BudgetPlan:
    """The epochs, history interval and refinement epochs that end the run within ``budget_seconds``, given its
    measured ``speeds`` and the ``spent_seconds`` it has already taken (loading, measuring). A plan made after
    ``epochs_done`` epochs counts them among its epochs (``spent_seconds`` being the time before the first) and
    keeps at least them, even where the budget turns out too short for them."""
    costs = Costs.of(config, train_count, val_count, speeds)
    epoch_seconds, mse_seconds, per_epoch_seconds = costs.epoch_seconds, costs.mse_seconds, costs.per_epoch_seconds
    cluster_seconds, refinement = costs.cluster_seconds, costs.refinement

    target = budget_seconds * TARGET_SHARE - spent_seconds - cluster_seconds

    def training(epochs: int, every: int) -> float:
        """Every epoch trains and clusters val; every ``every``-th and the last also measure the train MSE (the
        last writing the latents too)."""
        return epochs * (epoch_seconds + per_epoch_seconds) + math.ceil(epochs / every) * mse_seconds

    def epochs_within(available: float) -> tuple[int, int]:
        """The most epochs, and their history's interval, that ``available`` seconds hold."""
        # First the epochs that fit with the MSE measured after the last alone; then as many MSE points as
        # HISTORY_SHARE of their training time pays for (up to HISTORY_POINTS), and the epochs that fit with those.
        most = max(0, math.floor((available - mse_seconds) / (epoch_seconds + per_epoch_seconds)))
        points = min(
            HISTORY_POINTS, max(1, most), max(1, math.floor(HISTORY_SHARE * most * epoch_seconds / mse_seconds))
        )
        every = max(1, math.ceil(most / points))
        epochs = most
        while epochs > 0 and training(epochs, every) > available:
            epochs -= 1
        return epochs, every

    refine_epochs = costs.refine_epochs_within(config.refine.epochs, budget_seconds)
    epochs, mse_every = epochs_within(target - refinement(refine_epochs))
    clusterer = ""
    if whitens_instead_of_refining(config, max(epochs, epochs_done) * train_count):
        clusterer, refine_epochs = WHITENED_CLUSTERER, 0  # the refinement's time goes to more epochs
        epochs, mse_every = epochs_within(target - refinement(0))
    refine_seconds = refinement(refine_epochs)
    if epochs_done and epochs < epochs_done:
        epochs = epochs_done
    elif epochs < 1:
        needed = spent_seconds + cluster_seconds + refinement(0) + mse_seconds + epoch_seconds + per_epoch_seconds
        raise ConfigError(
            f"budget {format_duration(budget_seconds)}: too short for one epoch of {train_count:,} images here "
            f"(a batch took {speeds.train_step_seconds:.2f}s; one epoch and the clustering need about "
            f"{format_duration(needed / TARGET_SHARE)}); give a longer budget, or --epochs instead"
        )
    estimate = {
        "spent_before_training": spent_seconds,
        "training": epochs * epoch_seconds,
        "history_and_checkpoints": training(epochs, mse_every) - epochs * epoch_seconds,
        "clustering": cluster_seconds,
        "refinement": refine_seconds,
    }
    estimate["total"] = sum(estimate.values())
    return BudgetPlan(budget_seconds, speeds, epochs, mse_every, refine_epochs, estimate, clusterer=clusterer)


def _step_seconds(epoch_seconds: float, config: RunConfig, train_count: int) -> float:
    """A training batch's seconds from an epoch's, as :class:`Costs` counts an epoch: per image, so an epoch's last,
    smaller batch costs its share of a full one."""
    return epoch_seconds * config.train.batch_size / train_count


def replan_after_first_epoch(
    plan: BudgetPlan, config: RunConfig, train_count: int, val_count: int, epoch_seconds: float, spent_seconds: float
) -> BudgetPlan:
    """``plan`` made again once the first epoch has trained, from that epoch's ``epoch_seconds`` instead of the
    few steps timed before it; ``spent_seconds`` is the time the run took before its first epoch. ``config`` holds
    the settings as they were before the first plan set them (the refinement's epochs, which a plan may lower).

    The first epoch is counted at its real time too, which includes what a few steps do not see (reading the
    images, an epoch's last batch); that errs towards ending early, never towards running over.
    """
    step = _step_seconds(epoch_seconds, config, train_count)
    again = plan_budget(
        plan.budget_seconds, config, train_count, val_count, replace(plan.speeds, train_step_seconds=step),
        spent_seconds, epochs_done=1,
    )  # fmt: skip
    provisional = plan.epochs if again.epochs != plan.epochs else 0
    # The speeds stay those measured before the first plan: budget.json keeps what each plan was made from.
    return replace(again, speeds=plan.speeds, first_epoch_step_seconds=step, provisional_epochs=provisional)


def midway_epoch(plan: BudgetPlan) -> int:
    """After which epoch a run on ``plan`` next plans again from its epochs' real time (0: it does not again)."""
    done = len(plan.replanned_after)
    if plan.epochs < MIDWAY_FROM_EPOCHS or done == len(MIDWAY_SHARES):
        return 0
    epoch = max(3, round(plan.epochs * MIDWAY_SHARES[done]))
    after_last = not plan.replanned_after or epoch > plan.replanned_after[-1]
    return epoch if after_last and epoch < plan.epochs else 0


def replan_midway(
    plan: BudgetPlan,
    config: RunConfig,
    train_count: int,
    val_count: int,
    epochs_done: int,
    train_seconds: float,
    history_seconds: float,
    spent_seconds: float,
) -> BudgetPlan:
    """``plan`` made again after ``epochs_done`` epochs from their real time: an epoch's mean ``train_seconds`` since
    the plan before (see :func:`aeclust.pipeline.replan_run_midway`), and its history's mean ``history_seconds`` (the
    val clustering, and the MSE pass where it was due);
    ``spent_seconds`` is the run's time so far, the last epoch's history not yet taken. ``config`` holds the settings
    as given (see :func:`replan_after_first_epoch`).

    The first epoch's time sets the plan after it, but later epochs drift from it: on this project's machine they ran
    15 % slower (a run 4 % over its budget) and 15 % quicker (a run 14 % under) than it did (docs/results.md,
    sections 22 and 24). The rest of the run is planned from the epochs' own means, and what is still to come after
    the epochs (the last MSE pass, clustering, refinement) from the speeds measured before training, at the pace the
    epochs now run against the step measured then: a machine 2.5 times quicker than when it measured ended a run at
    0.83 of its budget when only its epochs were counted quicker (section 29).
    """
    pace = _step_seconds(train_seconds, config, train_count) / plan.speeds.train_step_seconds
    costs = Costs.of(config, train_count, val_count, plan.speeds.at_pace(pace))
    after_each = history_seconds + plan.speeds.checkpoint_seconds
    epoch_seconds = train_seconds + after_each

    def epochs_within(refine_epochs: int) -> int:
        # Still to come: this epoch's history, the epochs that fit, the last MSE pass, clustering and refinement.
        end = costs.mse_seconds + costs.cluster_seconds + costs.refinement(refine_epochs)
        available = plan.budget_seconds * TARGET_SHARE - spent_seconds - after_each - end
        return epochs_done + max(0, math.floor(available / epoch_seconds))

    refine_epochs = costs.refine_epochs_within(config.refine.epochs, plan.budget_seconds)
    epochs, clusterer = epochs_within(refine_epochs), ""
    if whitens_instead_of_refining(config, epochs * train_count):
        clusterer, refine_epochs = WHITENED_CLUSTERER, 0
        epochs = epochs_within(0)
    estimate = {
        "spent_before_training": spent_seconds + after_each - epochs_done * epoch_seconds,
        "training": epochs * epoch_seconds,  # history and checkpoints included, as the epochs took them
        "history_and_checkpoints": costs.mse_seconds,  # the last MSE pass
        "clustering": costs.cluster_seconds,
        "refinement": costs.refinement(refine_epochs),
    }
    estimate["total"] = sum(estimate.values())
    return replace(
        plan, epochs=epochs, refine_epochs=refine_epochs, clusterer=clusterer, estimate=estimate,
        replanned_after=(*plan.replanned_after, epochs_done), midway_epoch_seconds=epoch_seconds,
        epochs_before_replan=(*plan.epochs_before_replan, plan.epochs if epochs != plan.epochs else 0),
    )  # fmt: skip


class BudgetClock:
    """How much of a run's budget is left, for its progress lines; ``spent_before`` counts earlier sessions."""

    def __init__(self, budget_seconds: float, started: float, spent_before: float = 0.0) -> None:
        self.budget_seconds, self.started, self.spent_before = budget_seconds, started, spent_before

    def spent(self) -> float:
        return self.spent_before + time.perf_counter() - self.started

    def describe(self) -> str:
        left = self.budget_seconds - self.spent()
        budget = format_duration(self.budget_seconds)
        if left < 0:
            return f"budget {budget}: {format_duration(-left)} over"
        return f"budget {budget}: {format_duration(left)} left"


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
    from aeclust.train import SelfSupervisedModel  # here: aeclust.train imports this module (BudgetClock)

    train_images = images.train_images
    count = len(train_images)
    generator = torch.Generator().manual_seed(config.seed)
    view_generator = engine.view_generator(generator, config.seed)
    autoencoder = create_autoencoder(config.model, images.image_size)
    method = SelfSupervisedModel(autoencoder, config.model, config.train.flip, engine)
    training_module = engine.prepare(method)
    autoencoder = method.autoencoder
    parameters = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=config.train.lr, fused=engine.fused_optimizer)

    def batch_of(size: int) -> torch.Tensor:
        """This process's share of a batch of ``size`` train images (a set smaller than a batch repeats)."""
        indices = torch.arange(size) % count
        share = share_of_batch(indices, engine)
        return images_at(train_images, share if share is not None else indices[:1])

    pixels = batch_of(config.train.batch_size)
    method.train()

    def train_step(batch: torch.Tensor):
        loss, sums = training_module(engine.images_to_device(batch), view_generator)
        return loss, len(batch), sums

    train_step_seconds = _timed_steps(optimizer, engine, train_step, pixels)

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

    def refine_step(batch: torch.Tensor):
        views = contrastive_view(engine.images_to_device(batch), view_generator, config.model)
        logits = refine_module(views)
        half = len(logits) // 2
        return consistency(logits[:half], logits[half:]), half, {}

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
        checkpoint_seconds = _checkpoint_seconds(method, optimizer)
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

