"""Which k does each criterion of ``--k auto`` choose on a finished run's learned features, and why?

    python bench/choose_k.py RUN_DIR [RUN_DIR ...] [--k-range 2:30] [--seed 0]

For each run it prints, per criterion of aeclust.cluster.choose_k, the chosen k, the three best-scored k and the seconds it
took, on the features the run clustered (its latent mode and scaling, from arrays/train_latents.npy). With labels
(class folders, read from prediction.csv's ids, or the run's data), it also prints how compact the true classes
are in those features (the cosine silhouette of the labels, on the same kind of subsample) and the silhouette of
k-means at the true number of classes: a criterion can only find the classes if they are the features' groups.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import silhouette_score

from aeclust.cluster.choose_k import K_CRITERIA, SAMPLE_SIZE, choose_k
from aeclust.cluster.features import latent_features
from aeclust.config import parse_k_range
from aeclust.data import load_images
from aeclust.pipeline.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--k-range", default="2:30", help="LO:HI, as --k-range takes it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    k_min, k_max = parse_k_range(args.k_range)
    print("run\timages\tclasses\tcriterion\tchosen\tbest three\tseconds")
    for run_dir in args.run_dirs:
        directory = RunDir(run_dir)
        config = directory.read_config()
        features = latent_features(directory.load_array("train_latents"), config.cluster.latent, config.cluster.scaling)
        labels = load_images(config.data, image_size=config.image_size).train_labels
        classes = "?" if labels is None else len(np.unique(labels))
        for criterion in K_CRITERIA:
            started = time.perf_counter()
            selection = choose_k(features, k_min, k_max, criterion, args.seed)
            seconds = time.perf_counter() - started
            best = sorted(selection.scores, key=lambda k: -np.nan_to_num(selection.scores[k], nan=-np.inf))[:3]
            print(f"{run_dir}\t{len(features)}\t{classes}\t{criterion}\t{selection.chosen}\t{best}\t{seconds:.1f}")
            if criterion == "silhouette" and labels is not None:
                sample = np.random.default_rng(args.seed).choice(len(features), min(len(features), SAMPLE_SIZE), replace=False)
                compactness = silhouette_score(features[sample], labels[sample], metric="cosine")
                at_classes = selection.scores.get(classes, float("nan"))
                print(
                    f"{run_dir}\tsilhouette of the true classes {compactness:.3f}; of k-means at k={classes} "
                    f"{at_classes:.3f}; of the chosen k={selection.chosen} {selection.scores[selection.chosen]:.3f}"
                )


if __name__ == "__main__":
    main()
