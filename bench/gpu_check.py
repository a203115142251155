"""The CUDA paths, exercised on a machine with a GPU: device, seconds per epoch, peak GPU memory, accuracy.

    PYTHONPATH=src python3 bench/gpu_check.py [--cifar10 CIFAR10_TRAIN_JPG_TAR_GZ] [--out DIR] [--epochs N]
                                              [--budget DURATION] [--data NAME=SOURCE ...]

Runs from a checkout with the machine's own torch (2.4 or newer, CUDA build) and nothing installed: it needs only
what aeclust's default imports (numpy, scikit-learn, scipy, Pillow, tqdm), not openTSNE or UMAP. In one run:
1. which device `--device auto` picks, its precision (bf16 where supported, else fp16 with a gradient scaler);
2. the default model on the embedded set on the GPU: seconds per epoch, refinement seconds, peak GPU memory, train
   and val accuracy, beside the same run's figures on the CPU measured before (docs/results.md);
3. a checkpoint written on the GPU, loaded on the CPU and encoding the same latents (within half precision);
4. with --cifar10, the default with --k 10 on the whole CIFAR-10 train split (50,000 images).
Every run is an ordinary run directory under --out.

With --budget (e.g. 8m), every run is `aeclust run --budget` on the GPU instead of the default's epochs: the same
plan the CPU curve uses (docs/budget-runs.json), given a GPU's speed. --data adds two-group sets (bench/pairings.py
builds them; e.g. --data birds-vs-airplanes=.data/birds-vs-airplanes), and each row shows beside it the CPU's best
kept run of that set (train accuracy at its longest budget): how far a GPU's minutes carry the curve towards
issue 18's target (0.92 on the embedded set, 0.90 on every pairing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from aeclust.budget.durations import parse_duration
from aeclust.data import load_images
from aeclust.encoders.autoencoder import load_model
from aeclust.pipeline.run import run
from aeclust.pipeline.rundir import RunDir
from aeclust.presets import DEFAULT_MODEL, preset
from aeclust.runtime.engine import resolve_device
from aeclust.runtime.infer import infer

KEPT_CPU_RUNS = Path(__file__).resolve().parent.parent / "docs" / "budget-runs.json"


def timed_default(data: str | None, out: Path, k: int, epochs: int | None, budget: float = 0.0) -> dict:
    config = preset(DEFAULT_MODEL)
    config.device = "cuda"
    config.cluster.k = k
    if data is not None:
        config.data = data
    if epochs is not None:
        config.train.epochs = epochs
    config.budget_seconds = budget
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = run(config, out, force=out.exists())
    metrics = result.metrics
    history = result.history
    row = {
        "images": sum(metrics["cluster_sizes"]),
        "epochs": metrics["epochs"],
        "seconds per epoch": np.mean([r.train_seconds for r in history]),
        "history eval s per epoch": np.mean([r.eval_seconds for r in history]),
        "refinement s": metrics["timings"].get("refine_seconds", 0.0),
        "end to end s": time.perf_counter() - started,
        "peak GPU memory GiB": torch.cuda.max_memory_allocated() / 2**30,
        "train accuracy": metrics.get("train_accuracy", float("nan")),
        "val accuracy": metrics.get("val_accuracy", float("nan")),
        "NMI": metrics.get("train_scores", {}).get("nmi", float("nan")),
    }
    if budget:
        row["share of the budget taken"] = metrics["budget"]["share_taken"]
    return row


def best_kept_on_cpu(kept: dict, name: str) -> str:
    """The CPU curve's run of this set (as ``kept``, docs/budget-runs.json, names it) at its longest kept budget:
    "train accuracy (budget)", or "–"."""
    runs = [run for key, run in kept.items() if key.split("/")[0] == name]
    if not runs:
        return "–"
    longest = max(runs, key=lambda run: run["record"]["budget_seconds"])
    return f"{longest['record']['train_accuracy']:.3f} ({longest['record']['budget']})"


def checkpoint_moves_to_cpu(run_dir: Path) -> float:
    """Largest difference between latents encoded on the GPU and on the CPU from one GPU-written checkpoint."""
    images = load_images(None).val_images[:256]
    on_gpu, _ = load_model(RunDir(run_dir).last_checkpoint, "cuda")
    on_cpu, _ = load_model(RunDir(run_dir).last_checkpoint, "cpu")
    from aeclust.runtime.engine import Engine

    gpu = infer(on_gpu, images, engine=Engine(torch.device("cuda"))).latents
    cpu = infer(on_cpu, images).latents
    return float(np.abs(gpu - cpu).max() / np.abs(cpu).max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar10", help="the CIFAR-10 train split (class folders, or their .tar.gz) for ten-way")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--epochs", type=int, help="override the default's epochs (default: its own)")
    parser.add_argument("--budget", help="run each set with this --budget (5m, 1h) instead of epochs")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=SOURCE", help="another two-group set")
    args = parser.parse_args()
    if args.budget and args.epochs:
        parser.error("--budget plans the epochs itself: give --budget or --epochs, not both")
    budget = parse_duration(args.budget) if args.budget else 0.0
    extra = {}
    for item in args.data:
        name, separator, source = item.partition("=")
        if not separator or not name or not source:
            parser.error(f"--data {item}: expected NAME=SOURCE")
        extra[name] = source
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, python {sys.version.split()[0]}", flush=True)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to check")
        return 1
    device = resolve_device("auto")
    print(
        f"--device auto -> {device}: {torch.cuda.get_device_name(device)}, "
        f"{'bf16' if torch.cuda.is_bf16_supported() else 'fp16 + gradient scaler'}",
        flush=True,
    )
    rows = {"embedded, k=2": timed_default(None, args.out / "embedded", 2, args.epochs, budget)}
    kept_names = {"embedded, k=2": "animals-vs-vehicles"}  # each row's set, as the CPU curve's kept runs name it
    print(f"checkpoint written on the GPU, encoded on the CPU: largest relative difference "
          f"{checkpoint_moves_to_cpu(args.out / 'embedded'):.2e}", flush=True)  # fmt: skip
    if args.cifar10:
        rows["CIFAR-10 train, k=10"] = timed_default(args.cifar10, args.out / "cifar10-k10", 10, args.epochs, budget)
        kept_names["CIFAR-10 train, k=10"] = "cifar10-ten-way"
    for name, source in extra.items():
        rows[f"{name}, k=2"] = timed_default(source, args.out / name, 2, args.epochs, budget)
        kept_names[f"{name}, k=2"] = name
    names = list(next(iter(rows.values())))
    print("\n| | " + " | ".join(rows) + " |\n|---|" + "---|" * len(rows))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{row[name]:.3f}" if isinstance(row[name], float) else str(row[name]) for row in rows.values()) + " |")
    if budget:
        kept = json.loads(KEPT_CPU_RUNS.read_text()) if KEPT_CPU_RUNS.is_file() else {}
        cpu = [best_kept_on_cpu(kept, kept_names[row]) for row in rows]
        print("| train accuracy on the CPU, longest kept budget | " + " | ".join(cpu) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
