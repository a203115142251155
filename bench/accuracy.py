"""Accuracy of named models over several seeds, side by side, on one or more HW9-layout sets.

    python bench/accuracy.py [--data DIR ...] [--models baseline ... contrastive] [--seeds 0 1 2] [--epochs N]
                             [--set section.key=value ...] [--out DIR]

Prints, per data set: configuration | val accuracy mean ± sd | train accuracy (with trainY.npy) | val MSE | training
seconds. Each run is an ordinary run directory under --out; a run that finished already is read back, not redone,
and one stopped mid-run resumes from its last epoch, so an interrupted benchmark continues where it stopped.
Judge defaults by train accuracy and by several sets (bench/pairings.py builds more), never by tuning to the 500
val images. --set changes settings of every listed model (e.g. --set model.temperature=0.2); such runs live in
their own folder (MODEL+model.temperature=0.2), so a variant is never read back as the model itself.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from aeclust.config import with_settings
from aeclust.data import load_images
from aeclust.errors import ConfigError
from aeclust.pipeline.run import run
from aeclust.pipeline.rundir import RunDir
from aeclust.presets import MODELS, preset

STUDY_ABLATIONS = ["baseline", "baseline+rotation", "resnet", "improved", "contrastive"]


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f} (one run)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def label(name: str, epochs: int | None = None, settings: list[str] = ()) -> str:
    """The table row and folder name of a model run with overrides, e.g. ``contrastive-8ep+model.temperature=0.2``."""
    return name + ("" if epochs is None else f"-{epochs}ep") + "".join(f"+{item}" for item in settings)


def run_or_read(
    name: str, data: str | None, seed: int, epochs: int | None, out: Path, images, settings: list[str] = ()
) -> dict:
    config = with_settings(preset(name), list(settings))
    config.seed = seed
    if data is not None:
        config.data = data
    if epochs is not None:
        config.train.epochs = epochs
    # Runs with overridden settings live apart, so they are never read back as the model's own.
    run_dir = RunDir(out / label(name, epochs, settings) / f"seed{seed}")
    if run_dir.config.is_file():
        if run_dir.read_config() != config:
            raise SystemExit(
                f"{run_dir.path}: holds a run with other settings than {name} seed {seed} has now; "
                "move it away or pass another --out"
            )
        if run_dir.metrics.is_file():
            return run_dir.read_metrics()
        if run_dir.last_checkpoint.is_file():  # a benchmark stopped mid-run goes on from there
            return run(config, run_dir.path, images=images, resume=True).metrics
    return run(config, run_dir.path, images=images, force=run_dir.path.exists()).metrics


def table(rows: list[tuple[str, list[dict]]]) -> str:
    header = "| configuration | val accuracy | train accuracy | val MSE | training s | runs |"
    lines = [header, "|---|---|---|---|---|---|"]
    for name, metrics in rows:
        lines.append(
            f"| {name} | {mean_sd([m.get('val_accuracy', float('nan')) for m in metrics])} "
            f"| {mean_sd([m.get('train_accuracy', float('nan')) for m in metrics])} "
            f"| {mean_sd([m.get('val_mse', float('nan')) for m in metrics])} "
            f"| {statistics.mean(m['timings']['train_seconds'] for m in metrics):.0f} | {len(metrics)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="*", default=[None], help="HW9-layout directories (default: the embedded set)")
    parser.add_argument("--models", nargs="*", default=STUDY_ABLATIONS, choices=list(MODELS), metavar="MODEL")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override every model's epochs (default: each model's own)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="SECTION.KEY=VALUE",
        dest="settings",
        help="change settings of every listed model (see aeclust models), e.g. model.temperature=0.2",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-accuracy"))
    args = parser.parse_args()
    try:
        with_settings(preset(args.models[0]), args.settings)  # refuse a typo before hours of runs, not after
    except ConfigError as error:
        parser.error(str(error))
    for data in args.data:
        images = load_images(data)
        out = args.out / images.name
        rows = [
            (
                label(name, args.epochs, args.settings),
                [run_or_read(name, data, seed, args.epochs, out, images, args.settings) for seed in args.seeds],
            )
            for name in args.models
        ]
        print(
            f"\n{images.name} ({len(images.train_images)} train images), seeds {args.seeds}\n{table(rows)}", flush=True
        )


if __name__ == "__main__":
    main()
