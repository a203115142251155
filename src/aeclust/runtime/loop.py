"""The one training loop: every objective of every stage (training the autoencoder, refining the clusters) runs
through :func:`run_epoch`, which knows about devices, mixed precision and processes so the stages need not."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from aeclust.runtime.engine import Engine
from aeclust.runtime.progress import Progress

Batch = TypeVar("Batch")


@dataclass
class EpochTotals:
    """An epoch's loss (averaged over its images) and the sums its steps reported, over every process."""

    loss: float
    images: int
    sums: dict[str, float] = field(default_factory=dict)


def share_of_batch(batch: torch.Tensor, engine: Engine) -> torch.Tensor | None:
    """This process's share of one batch, so that together the processes take the batch one process would; None
    when the batch is too small to give every process an item (a process with none would leave the others waiting)."""
    if not engine.distributed:
        return batch
    if len(batch) < engine.world_size:
        return None
    return torch.tensor_split(batch, engine.world_size)[engine.rank]


def shard_batches(order: torch.Tensor, batch_size: int, engine: Engine) -> Iterator[torch.Tensor]:
    """The epoch's batches of indices (``batch_size`` of ``order`` at a time), each split across the processes by
    :func:`share_of_batch`; a last batch too small to split is left out under torchrun (at most a few images an
    epoch, drawn afresh the next)."""
    for start in range(0, len(order), batch_size):
        share = share_of_batch(order[start : start + batch_size], engine)
        if share is not None:
            yield share


def run_epoch(
    batches: Iterable[Batch],
    step: Callable[[Batch], tuple[torch.Tensor, int, dict[str, torch.Tensor]]],
    optimizer: torch.optim.Optimizer,
    engine: Engine,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    description: str = "",
    total: int | None = None,
) -> EpochTotals:
    """One pass: for each batch, ``step`` gives the loss (and how many images it covered, and any sums to report);
    the loop backpropagates it, steps the optimizer (through ``scaler`` for fp16) and the schedule, and keeps
    count. The step runs under the engine's autocast."""
    total_loss = torch.zeros((), dtype=torch.float64, device=engine.device)
    seen, sums = 0, {}
    progress = Progress(total, description or "training", "batch", enabled=engine.is_main)
    for batch in batches:
        with engine.autocast():
            loss, count, reported = step(batch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if scheduler is not None:
            scheduler.step()
        # Kept on the device, so a GPU is not made to wait for the CPU at every step.
        total_loss += loss.detach().double() * count
        seen += count
        for name, value in reported.items():
            sums[name] = sums.get(name, 0.0) + value
        if progress.shown:  # only on a terminal: reading the loss makes a GPU wait
            progress.note(loss=f"{float(total_loss) / seen:.4f}")
        progress.update()
    progress.close()
    loss_sum, seen = engine.sum(float(total_loss)), int(engine.sum(seen))
    return EpochTotals(loss_sum / max(1, seen), seen, {name: engine.sum(float(value)) for name, value in sums.items()})
