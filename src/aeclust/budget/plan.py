"""The plan file: what a budgeted run measured of itself and the settings it planned (``budget.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from aeclust.config import RunConfig, read_replans, setting_text
from aeclust.errors import ConfigError
from aeclust.runtime.io import write_text_atomic
from aeclust.runtime.progress import format_duration

# What a plan sets, as --set names them. A plan also sets cluster.clusterer, but only where it was left to aeclust
# ("auto"), so a clusterer the user chose is no plan's to change.
PLANNED_SETTINGS = (
    "train.epochs", "train.mse_every", "refine.epochs", "train.provisional_epochs", "train.replanned_after",
    "train.epochs_before_replan",
)  # fmt: skip


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


