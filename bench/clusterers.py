"""Every clusterer on the clustering features of finished runs, side by side, with no training.

    python bench/clusterers.py RUN_DIR [RUN_DIR ...] [--clusterers kmeans kmeans-merge gmm] [--seeds 0]

For each run (its data must have train labels, which only score), the run's own clustering stage (latent mode,
scaling, reducer, embedder) is redone with each clusterer at the run's k, before any refinement. Prints
clusterer | accuracy (Hungarian) | NMI | ARI | cluster shares (largest first) | neighbour pairs kept | seconds, and
the true shares, so uneven classes show whether a clusterer keeps them uneven. "Neighbour pairs kept" is the share
of (image, one of its 10 nearest neighbours) pairs inside one cluster, at the first seed: what the "auto"
clusterer compares (docs/results.md, section 17).
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections import Counter
from pathlib import Path

import numpy as np

from aeclust.cluster.clusterers import CLUSTERERS, neighbour_agreement, neighbour_indices
from aeclust.cluster.stage import cluster_latents
from aeclust.data import load_images
from aeclust.metrics import clustering_scores
from aeclust.pipeline.rundir import RunDir


def shares(sizes: list[int] | np.ndarray) -> str:
    sizes = sorted((int(size) for size in sizes), reverse=True)
    return " / ".join(f"{100 * size / sum(sizes):.0f}" for size in sizes)


def compare(run_dir: Path, clusterers: list[str], seeds: list[int]) -> list[str]:
    """Markdown rows, one per clusterer, for one finished run."""
    directory = RunDir(run_dir)
    config = directory.read_config()
    metrics = directory.read_metrics()
    images = load_images(config.data, image_size=config.image_size)
    if images.train_labels is None:
        raise SystemExit(f"{run_dir}: its data has no train labels to score against")
    latents = directory.load_array("train_latents")
    k = metrics.get("k", config.cluster.k)
    rows, indices = [], None
    for name in clusterers:
        settings = copy.deepcopy(config.cluster)
        settings.k, settings.clusterer = k, name
        results = [cluster_latents(latents, settings, seed) for seed in seeds]
        scores = [clustering_scores(images.train_labels, result.clusters) for result in results]

        def mean(key: str) -> str:
            values = [score[key] for score in scores]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            return f"{statistics.mean(values):.3f}{spread}"

        seconds = statistics.mean(result.seconds["cluster"] for result in results)
        sizes = np.bincount(results[0].clusters, minlength=k)
        indices = neighbour_indices(results[0].embedding) if indices is None else indices
        kept = neighbour_agreement(indices, results[0].clusters)
        rows.append(
            f"| {name} | {mean('accuracy')} | {mean('nmi')} | {mean('ari')} | {shares(sizes)} | {kept:.3f} | {seconds:.1f} |"
        )
    true = shares(list(Counter(images.train_labels.tolist()).values()))
    return [f"\n{run_dir} (k = {k}, {len(latents)} images; true shares {true})", *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--clusterers", nargs="*", default=["kmeans", "kmeans-merge"], choices=list(CLUSTERERS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    args = parser.parse_args()
    print("| clusterer | accuracy | NMI | ARI | cluster shares % | neighbour pairs kept | s |\n|---|---|---|---|---|---|---|")
    for run_dir in args.run_dirs:
        print("\n".join(compare(run_dir, args.clusterers, args.seeds)), flush=True)


if __name__ == "__main__":
    main()
