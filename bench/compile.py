"""Does `torch.compile` make a training step cheaper? The default's step as it runs, and compiled, side by side.

    PYTHONPATH=src python bench/compile.py [--device cpu|cuda] [--images 2048] [--epochs 3] [--data SOURCE]

Builds the default model twice from the same seed on the first --images train images of --data (default: the
embedded set): once as aeclust trains it, once with its training module (views, encoder, decoder, heads and
losses) compiled by `nn.Module.compile` (TorchInductor: C++/OpenMP kernels on a CPU, Triton on a GPU). Each trains
one epoch to warm up (the compiled one compiles there) and then --epochs timed epochs. Prints the warm-up seconds,
the seconds per training batch after it, and the last epoch's loss for each (the compiled step should train alike;
its kernels round differently, so the losses agree closely rather than exactly).

A budgeted run spends everything but its fixed costs in training steps, so a step that is x times cheaper buys
about x times the epochs, less the compile time. docs/results.md, section 29, has the CPU's figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace

import torch

from aeclust.data import load_images
from aeclust.encoders.autoencoder import Trainer
from aeclust.pipeline.run import run_trainer
from aeclust.presets import DEFAULT_MODEL, preset


def finish_queued_work(trainer: Trainer) -> None:
    """A GPU runs its kernels after the Python that queued them has moved on: wait for them before reading a clock."""
    if trainer.engine.is_cuda:
        torch.cuda.synchronize()


def timed(images, device: str, epochs: int, compiled: bool) -> dict:
    config = preset(DEFAULT_MODEL)
    config.device = device
    config.train.epochs = epochs + 1  # the one-cycle schedule spans the epochs timed here
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = run_trainer(config, images, run_dir)
        if compiled:
            trainer.training_module.compile()
        batches = -(-len(images.train_images) // config.train.batch_size)
        started = time.perf_counter()
        trainer.train_one_epoch()
        finish_queued_work(trainer)
        warm_up = time.perf_counter() - started
        per_batch, loss = [], float("nan")
        for _ in range(epochs):
            started = time.perf_counter()
            loss, _ = trainer.train_one_epoch()
            finish_queued_work(trainer)
            per_batch.append((time.perf_counter() - started) / batches)
    return {"warm-up epoch, s": warm_up, "a batch, s": statistics.median(per_batch), "last loss": loss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=2048, help="train images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    parser.add_argument("--data", help="a source as `aeclust run --data` takes it (default: the embedded set)")
    args = parser.parse_args()
    images = load_images(args.data)
    images = replace(images, train_images=images.train_images[: args.images], train_labels=None, train_ids=None)
    print(f"torch {torch.__version__}, {args.device}, {len(images.train_images)} images, {args.epochs} timed epochs")
    rows = {name: timed(images, args.device, args.epochs, compiled) for name, compiled in
            (("as trained", False), ("compiled", True))}  # fmt: skip
    print("\n| | " + " | ".join(rows) + " |\n|---|" + "---|" * len(rows))
    for figure in next(iter(rows.values())):
        print(f"| {figure} | " + " | ".join(f"{row[figure]:.3f}" for row in rows.values()) + " |")
    eager, compiled = rows["as trained"]["a batch, s"], rows["compiled"]["a batch, s"]
    print(f"\ncompiled / as trained, a batch: {compiled / eager:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
