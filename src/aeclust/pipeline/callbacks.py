"""What crosses the stages of a run while it goes, kept out of the stages themselves (as Lightning keeps it in
callbacks): the settings as planned so far, the history written after each epoch, the val images clustered for the
history's accuracy, and a budgeted run's plan made again and its clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from aeclust.budget.clock import BudgetClock
from aeclust.cluster.stage import Clustering, cluster_latents
from aeclust.config import RunConfig, TrainConfig
from aeclust.encoders.autoencoder import TrainingHooks
from aeclust.encoders.records import EpochRecord
from aeclust.pipeline.rundir import RunDir


class RunCallbacks:
    """One run's: ``config`` follows the run's settings as its budget plans them again; ``replanner`` (a budgeted
    run's) makes the new settings after an epoch, given the settings so far, the epoch and its training seconds;
    ``clock`` says how much of the budget is left on each epoch's line."""

    def __init__(self, config: RunConfig, run_dir: Path) -> None:
        self.config = config
        self.directory = RunDir(run_dir)
        self.replanner: Callable[[RunConfig, int, float], RunConfig] | None = None
        self.clock: BudgetClock | None = None

    def cluster_val(self, latents: np.ndarray) -> Clustering:
        """The val images clustered as the run clusters them now (a plan may have changed its clusterer)."""
        return cluster_latents(latents, self.config.cluster, self.config.seed)

    def write_history(self, records: list[EpochRecord]) -> None:
        self.directory.write_history(records)

    def replan(self, train: TrainConfig, epoch: int, seconds: float) -> TrainConfig:
        if self.replanner is not None:
            self.config = self.replanner(self.config, epoch, seconds)
        return self.config.train

    def status(self) -> str:
        return self.clock.describe() if self.clock is not None else ""

    def training_hooks(self) -> TrainingHooks:
        return TrainingHooks(
            cluster_val=self.cluster_val, history=self.write_history, replan=self.replan,
            status=self.status, latents_file=self.directory.array("train_latents"),
        )  # fmt: skip
