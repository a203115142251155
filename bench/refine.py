"""Experiment: does SCAN-style neighbour consistency lift a finished run's clusters above k-means on its latents?

    python bench/refine.py RUN_DIR [RUN_DIR ...] [--epochs 3] [--set self_label_epochs=2 confident_share=0.5 ...]

For each finished run (trained on a set with train labels), it prints side by side: k-means on the run's pooled,
unit-length latents; how often an image's nearest neighbours in that space share its label; and, after each
epoch of the refinement in ``aeclust.refine.scan`` (neighbour consistency, then self-labelling), the train accuracy.
The refinement uses the run's own settings; --epochs and --set override them. Labels only score; they never
steer the refinement.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from aeclust.cluster.clusterers import cluster
from aeclust.cluster.features import latent_features
from aeclust.config import RunConfig, with_settings
from aeclust.data import load_images
from aeclust.encoders.autoencoder import load_model
from aeclust.errors import ConfigError
from aeclust.metrics import accuracy_of
from aeclust.pipeline.rundir import RunDir
from aeclust.refine.scan import refiner_for
from aeclust.runtime.engine import set_threads
from aeclust.runtime.infer import infer


def refine(run_dir: Path, epochs: int, overrides: list[str]) -> dict:
    directory = RunDir(run_dir)
    config = directory.read_config()
    config.refine.epochs = epochs
    config = with_settings(config, [f"refine.{item}" for item in overrides])
    images = load_images(config.data, image_size=config.image_size)
    if images.train_labels is None:
        raise SystemExit(f"{run_dir}: its data has no train labels to score against")
    model, _ = load_model(directory.last_checkpoint)
    started = time.perf_counter()
    latents = infer(model, images.train_images).latents
    kmeans = cluster(latent_features(latents, "pool", "l2"), config.cluster.k, "kmeans", config.seed)
    per_epoch = []
    refiner = refiner_for(model, images, config, kmeans)
    labels = torch.from_numpy(images.train_labels)
    agreement = float((labels[refiner.neighbours] == labels[:, None]).float().mean())
    for epoch in range(1, config.refine.total_epochs + 1):  # one epoch at a time, scoring the clusters after each
        per_epoch.append(accuracy_of(images.train_labels, refiner.fit(log=print, until=epoch).train_clusters))
    return {
        "kmeans": accuracy_of(images.train_labels, kmeans),
        "agreement": agreement,
        "refined": per_epoch,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of neighbour consistency")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="other refinement settings (see aeclust models)"
    )
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    set_threads(args.threads)
    overrides = args.set
    try:
        with_settings(RunConfig(), [f"refine.{item}" for item in overrides])  # refuse a typo before any work
    except ConfigError as error:
        parser.error(str(error))
    print("| run | k-means train acc | neighbour label agreement | refined, per epoch | seconds |")
    print("|---|---|---|---|---|")
    results = []
    for run_dir in args.run_dirs:
        result = refine(run_dir, args.epochs, overrides)
        results.append(result)
        epochs = " ".join(f"{a:.3f}" for a in result["refined"])
        print(
            f"| {run_dir} | {result['kmeans']:.3f} | {result['agreement']:.3f} | {epochs} | {result['seconds']:.0f} |",
            flush=True,
        )
    if len(results) > 1:
        last = np.mean([r["refined"][-1] for r in results])
        print(f"\nmean: k-means {np.mean([r['kmeans'] for r in results]):.3f}, refined {last:.3f}")


if __name__ == "__main__":
    main()
