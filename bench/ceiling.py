"""Diagnostic: is a finished run held back by its clustering stage or by its latents?

    python bench/ceiling.py RUN_DIR [RUN_DIR ...] [--overcluster 5 10 20 50] [--whiten 4 8 16 32] [--folds 5]
                            [--heads 0 1 2]

For each finished run on a set with train labels, it prints side by side, on the features the run clustered
(its latent mode and scaling):
- the run's own answer (after its refinement, where it refined);
- k-means into the run's k clusters, scored as the run scores it;
- whitened-kmeans (the vote of k-means on 4, 8 and 16 whitened dimensions), and k-means on the features whitened to
  each --whiten number of dimensions alone;
- a linear probe: logistic regression trained with the labels, scored by cross-validation. No straight cut through
  the features does much better, so a clustering near it has little left to gain;
- over-clustering: k-means into more clusters, each then given the label most of its images have. No unsupervised
  merge of those clusters can beat that (an oracle merge);
- with --heads, a frozen-feature cluster head: a linear k-way head on the features (each dimension standardized),
  trained by neighbour consistency (SCAN's loss, 20 nearest neighbours) from a random start, one per seed given,
  with the share of nearest-neighbour pairs its clusters keep together. The encoder is not touched, unlike a run's
  refinement, so it asks whether a straight cut chosen by neighbours alone comes nearer the probe than k-means.
Labels are used here only to find the ceiling; nothing of this steers a run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from aeclust.cluster.clusterers import cluster, neighbour_agreement
from aeclust.cluster.features import latent_features
from aeclust.cluster.neighbours import nearest_neighbours
from aeclust.cluster.reduce import whiten
from aeclust.data import load_images
from aeclust.metrics import accuracy_of
from aeclust.nn.objectives.neighbours import scan_loss
from aeclust.pipeline.rundir import RunDir


def oracle_merge_accuracy(features: np.ndarray, labels: np.ndarray, clusters: int, seed: int) -> float:
    """Accuracy of k-means into ``clusters`` groups when each group takes its majority label."""
    assigned = KMeans(clusters, n_init=3, random_state=seed).fit_predict(features)
    majority = np.zeros(clusters, dtype=labels.dtype)
    for group in range(clusters):
        majority[group] = np.bincount(labels[assigned == group]).argmax()
    return float((majority[assigned] == labels).mean())


HEAD_NEIGHBOURS, HEAD_STEPS, HEAD_BATCH, HEAD_LR, HEAD_ENTROPY_WEIGHT = 20, 1500, 512, 1e-3, 5.0


def frozen_head_clusters(features: np.ndarray, neighbours: torch.Tensor, k: int, seed: int) -> np.ndarray:
    """Clusters of a linear head trained by neighbour consistency on fixed ``features``, pairing each row with
    its ``neighbours`` (as :func:`aeclust.cluster.neighbours.nearest_neighbours` finds them, once for every seed)."""
    points = torch.as_tensor(features, dtype=torch.float32)
    points = (points - points.mean(0)) / (points.std(0) + 1e-6)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = torch.nn.Linear(points.shape[1], k)
    optimizer = torch.optim.Adam(head.parameters(), lr=HEAD_LR)
    for _ in range(HEAD_STEPS):
        anchors = torch.randint(0, len(points), (HEAD_BATCH,), generator=generator)
        partners = neighbours[anchors, torch.randint(0, neighbours.shape[1], (HEAD_BATCH,), generator=generator)]
        loss = scan_loss(head(points[anchors]), head(points[partners]), HEAD_ENTROPY_WEIGHT)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return head(points).argmax(1).numpy()


def ceiling(
    run_dir: Path, overcluster: list[int], whitened: list[int], folds: int, heads: tuple[int, ...] = ()
) -> dict:
    directory = RunDir(run_dir)
    latents = directory.array("train_latents")
    if not latents.is_file():
        raise SystemExit(f"{run_dir}: expected a finished run holding {latents.relative_to(directory.path)}, found none")
    config = directory.read_config()
    labels = load_images(config.data, image_size=config.image_size).train_labels
    if labels is None:
        raise SystemExit(f"{run_dir}: its data has no train labels to score against")
    features = latent_features(directory.load_array("train_latents"), config.cluster.latent, config.cluster.scaling)
    if len(features) != len(labels):
        raise SystemExit(f"{run_dir}: {len(features)} latents but {len(labels)} train labels; not the same images")
    k = config.cluster.k
    kmeans = cluster(features, k, "kmeans", config.seed)
    splits = StratifiedKFold(folds, shuffle=True, random_state=config.seed)
    probe = cross_val_score(LogisticRegression(max_iter=2000), features, labels, cv=splits)
    return {
        "answer": accuracy_of(labels, directory.load_array("train_clusters")),
        "kmeans": accuracy_of(labels, kmeans),
        "whitened_kmeans": accuracy_of(labels, cluster(features, k, "whitened-kmeans", config.seed)),
        "whitened": [
            accuracy_of(labels, cluster(whiten(features, dimensions, config.seed), k, "kmeans", config.seed))
            for dimensions in whitened
        ],
        "probe": float(probe.mean()),
        "merged": [oracle_merge_accuracy(features, labels, k, config.seed) for k in overcluster],
        "heads": head_scores(features, labels, k, heads),
    }


def head_scores(features: np.ndarray, labels: np.ndarray, k: int, seeds: tuple[int, ...]) -> list[dict[str, float]]:
    """Each seed's frozen head: its accuracy, and the share of nearest-neighbour pairs its clusters keep."""
    if not seeds:
        return []
    neighbours = nearest_neighbours(features, HEAD_NEIGHBOURS)  # unit-length rows: by cosine
    scores = []
    for seed in seeds:
        clusters = frozen_head_clusters(features, neighbours, k, seed)
        agreement = neighbour_agreement(neighbours.numpy(), clusters)
        scores.append({"accuracy": accuracy_of(labels, clusters), "agreement": agreement})
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--overcluster", nargs="*", type=int, default=[5, 10, 20, 50], metavar="K")
    parser.add_argument("--whiten", nargs="*", type=int, default=[], metavar="D", help="whitened dimensions to try")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the linear probe")
    parser.add_argument("--heads", nargs="*", type=int, default=[], metavar="SEED", help="frozen-feature heads' seeds")
    args = parser.parse_args()
    header = ["run", "run's answer", "k-means", "whitened-kmeans"]
    header += [f"k-means, {d} whitened" for d in args.whiten] + [f"linear probe ({args.folds}-fold)"]
    header += [f"{k} clusters, oracle merge" for k in args.overcluster]
    header += [f"frozen head, seed {seed} (neighbour pairs kept)" for seed in args.heads]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for run_dir in args.run_dirs:
        result = ceiling(run_dir, args.overcluster, args.whiten, args.folds, tuple(args.heads))
        scores = [result["answer"], result["kmeans"], result["whitened_kmeans"], *result["whitened"], result["probe"]]
        cells = [f"{score:.3f}" for score in scores + result["merged"]]
        cells += [f"{head['accuracy']:.3f} ({100 * head['agreement']:.1f} %)" for head in result["heads"]]
        print(f"| {run_dir} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
