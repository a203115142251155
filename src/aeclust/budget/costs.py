"""A plan's arithmetic: what each part of a run costs at its measured speeds, and the epochs that fit a budget.

Pure functions of the settings, the image counts and the speeds: nothing here measures, trains or reads a clock."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from aeclust.budget.plan import BudgetPlan, Speeds
from aeclust.cluster.clusterers import WHITENED_KMEANS
from aeclust.config import RefineConfig, RunConfig
from aeclust.errors import ConfigError
from aeclust.runtime.progress import format_duration

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


# Neighbour search above the exact limit (a faiss index): seconds per image, measured at a million images on
# this project's 2-core machine (docs/results.md, section 18). A GPU is faster; the plan then has time to spare.
APPROXIMATE_SEARCH_SECONDS_PER_IMAGE = 4.0e-4


# A plan long enough to show its encoder this many images (epochs × train images) clusters by WHITENED_CLUSTERER
# and does not refine: by then k-means on whitened dimensions beats the refinement, which pulls every start back to
# what the images' nearest neighbours agree on (docs/results.md, section 22). Shorter plans refine as before.
WHITEN_FROM_IMAGES = 200_000


WHITENED_CLUSTERER = WHITENED_KMEANS


# The run plans once more after each of these shares of its epochs, from their real time (an epoch's time drifts
# from the first's: docs/results.md, sections 22 and 24), where it has at least MIDWAY_FROM_EPOCHS. More than once,
# since a machine's speed can change part-way through (section 25: a run's epochs sped up by a fifth after its first
# midway plan); the last late, since a change after it goes uncorrected (section 29: epochs a quarter quicker after
# two thirds of a run ended it at 0.88 of its budget), but not later, since each plan from then on counts fewer
# epochs' time and the epochs left to add or drop are fewer.
MIDWAY_SHARES = (1 / 3, 2 / 3, 5 / 6)


MIDWAY_FROM_EPOCHS = 6
# Besides those, a plan of any length is made again after any epoch whose pace says the run would end further than
# this share of its budget from where the plan aims, either way: a run that measured itself while the machine was busy
# and then ran its 5 epochs at half the time ended at 0.56 of a 4-minute budget, too short a plan for a midway one.
OFF_PACE_SHARE = 0.10


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


def _at_pace(
    plan: BudgetPlan, config: RunConfig, train_count: int, val_count: int, train_seconds: float, history_seconds: float
) -> tuple[Costs, float, float]:
    """What each part of the run costs at the pace its epochs now run (an epoch's mean ``train_seconds`` against the
    step measured before training), what follows each epoch (its history and checkpoints), and a whole epoch."""
    pace = _step_seconds(train_seconds, config, train_count) / plan.speeds.train_step_seconds
    costs = Costs.of(config, train_count, val_count, plan.speeds.at_pace(pace))
    after_each = history_seconds + plan.speeds.checkpoint_seconds
    return costs, after_each, train_seconds + after_each


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
    the plan before (see :func:`aeclust.pipeline.run.replan_run_midway`), and its history's mean ``history_seconds``
    (the val clustering, and the MSE pass where it was due); ``spent_seconds`` is the run's time so far, the last
    epoch's history not yet taken. ``config`` holds the settings as given (see :func:`replan_after_first_epoch`).

    The first epoch's time sets the plan after it, but later epochs drift from it: on this project's machine they ran
    15 % slower (a run 4 % over its budget) and 15 % quicker (a run 14 % under) than it did (docs/results.md,
    sections 22 and 24). The rest of the run is planned from the epochs' own means, and what is still to come after
    the epochs (the last MSE pass, clustering, refinement) from the speeds measured before training, at the pace the
    epochs now run against the step measured then: a machine 2.5 times quicker than when it measured ended a run at
    0.83 of its budget when only its epochs were counted quicker (section 29).
    """
    costs, after_each, epoch_seconds = _at_pace(plan, config, train_count, val_count, train_seconds, history_seconds)

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


def projected_seconds(
    plan: BudgetPlan,
    config: RunConfig,
    train_count: int,
    val_count: int,
    epochs_done: int,
    train_seconds: float,
    history_seconds: float,
    spent_seconds: float,
) -> float:
    """When a run on ``plan`` would end, ``epochs_done`` epochs in, if its epochs went on at the pace they now run (an
    epoch's mean ``train_seconds`` and ``history_seconds``, as :func:`replan_midway` takes them) and what follows them
    ran at that pace too; ``spent_seconds`` is the run's time so far, the last epoch's history not yet taken."""
    costs, after_each, epoch_seconds = _at_pace(plan, config, train_count, val_count, train_seconds, history_seconds)
    end = costs.mse_seconds + costs.cluster_seconds + costs.refinement(plan.refine_epochs)
    return spent_seconds + after_each + (plan.epochs - epochs_done) * epoch_seconds + end


def off_pace(plan: BudgetPlan, projected: float) -> bool:
    """Whether a run projected to end after ``projected`` seconds ends too far from where ``plan`` aims
    (:data:`OFF_PACE_SHARE` of the budget, either way) to go on without planning again."""
    return abs(projected - plan.budget_seconds * TARGET_SHARE) > OFF_PACE_SHARE * plan.budget_seconds
