"""What an encoder's training leaves in its directory: the checkpoints' names and the per-epoch history (kept
apart from the training, so that reading a run's files does not wait for torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Where training keeps its checkpoints, inside the directory it is given (a run directory names them so too).
CHECKPOINT_FOLDER = "checkpoints"
LAST_CHECKPOINT = f"{CHECKPOINT_FOLDER}/last.pt"


def epoch_checkpoint(directory: Path, epoch: int) -> Path:
    """The weights after ``epoch`` epochs, as training leaves them in ``directory``."""
    return Path(directory) / CHECKPOINT_FOLDER / f"epoch_{epoch:03d}.pt"



@dataclass
class EpochRecord:
    """One row of history.csv."""

    epoch: int
    train_loss: float  # the training objective, averaged over the epoch's batches
    train_mse: float  # reconstruction MSE on all of trainX, unrotated, in [-1, 1] space
    rotation_accuracy: float  # share of batches' rotations the head got right (nan without rotation)
    val_accuracy: float  # the full clustering pipeline on val latents (nan without val)
    train_seconds: float
    eval_seconds: float
