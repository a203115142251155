"""Experiment: does SCAN-style neighbour consistency lift a finished run's clusters above k-means on its latents?

    python bench/refine.py RUN_DIR [RUN_DIR ...] [--epochs 3] [--neighbours 20] [--entropy-weight 5] [--backbone-lr 1e-4]

For each finished run (trained on a set with train labels), it prints side by side: k-means on the run's pooled,
unit-length latents; how often an image's nearest neighbours in that space share its label; and, after each
epoch of fine-tuning, the train accuracy of a two-way head. The head starts at the k-means centroids; each step
pulls an augmented image and an augmented nearest neighbour towards the same cluster, while an entropy term keeps
both clusters in use (Van Gansbeke et al., "SCAN", 2020). Labels only score; they never steer the fine-tuning.
The encoder is updated too: on a frozen encoder the head alone did not beat k-means.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aeclust.augment import contrastive_view
from aeclust.cluster import cluster
from aeclust.config import RunConfig
from aeclust.data import load_images
from aeclust.embed import INFERENCE_BATCH, encode_images, latent_features, to_model_input
from aeclust.metrics import accuracy_of
from aeclust.pipeline import CONFIG_FILE
from aeclust.train import LAST_CHECKPOINT, load_model, set_threads


def pooled_unit(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return F.normalize(model.encode(inputs.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3)), dim=1)


def head_clusters(model: torch.nn.Module, head: torch.nn.Linear, inputs: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        clusters = [
            head(pooled_unit(model, inputs[start : start + INFERENCE_BATCH])).argmax(1)
            for start in range(0, len(inputs), INFERENCE_BATCH)
        ]
    model.train()
    return torch.cat(clusters).numpy()


def refine(run_dir: Path, args: argparse.Namespace) -> dict:
    config = RunConfig.load(run_dir / CONFIG_FILE)
    images = load_images(config.data, image_size=config.image_size)
    if images.train_labels is None:
        raise SystemExit(f"{run_dir}: its data has no train labels to score against")
    model, _ = load_model(run_dir / "checkpoints" / LAST_CHECKPOINT)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    started = time.perf_counter()

    latents, _ = encode_images(model, images.train_images)
    features = torch.from_numpy(latent_features(latents, "pool", "l2"))
    kmeans = cluster(features.numpy(), 2, "kmeans", config.seed)
    similarity = features @ features.T
    similarity.fill_diagonal_(-2)
    neighbours = similarity.topk(args.neighbours, dim=1).indices
    labels = torch.from_numpy(images.train_labels)
    agreement = float((labels[neighbours] == labels[:, None]).float().mean())

    head = torch.nn.Linear(features.shape[1], 2)
    with torch.no_grad():  # start from the k-means solution: logits are scaled cosines to its centroids
        centroids = torch.stack([features[torch.from_numpy(kmeans) == c].mean(0) for c in range(2)])
        head.weight.copy_(F.normalize(centroids, dim=1) * 10)
        head.bias.zero_()
    optimizer = torch.optim.Adam(
        [{"params": model.parameters(), "lr": args.backbone_lr}, {"params": head.parameters(), "lr": 1e-3}]
    )
    inputs = to_model_input(images.train_images)
    model.train()
    per_epoch = []
    for _ in range(args.epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order), args.batch_size):
            anchors = order[start : start + args.batch_size]
            picked = torch.randint(0, args.neighbours, (len(anchors),), generator=generator)
            partners = neighbours[anchors, picked]
            views = torch.cat(
                [contrastive_view(inputs[anchors], generator), contrastive_view(inputs[partners], generator)]
            )
            probabilities = head(pooled_unit(model, views)).softmax(1)
            anchor_p, partner_p = probabilities[: len(anchors)], probabilities[len(anchors) :]
            consistency = -torch.log((anchor_p * partner_p).sum(1).clamp_min(1e-8)).mean()
            mean_p = anchor_p.mean(0)
            entropy = -(mean_p * torch.log(mean_p.clamp_min(1e-8))).sum()
            loss = consistency - args.entropy_weight * entropy
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        per_epoch.append(accuracy_of(images.train_labels, head_clusters(model, head, inputs)))
    return {
        "run": str(run_dir),
        "kmeans": accuracy_of(images.train_labels, kmeans),
        "agreement": agreement,
        "refined": per_epoch,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=20)
    parser.add_argument("--entropy-weight", type=float, default=5.0)
    parser.add_argument("--backbone-lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    set_threads(args.threads)
    print(f"| run | k-means train acc | {args.neighbours}-NN label agreement | refined, per epoch | seconds |")
    print("|---|---|---|---|---|")
    results = []
    for run_dir in args.run_dirs:
        result = refine(run_dir, args)
        results.append(result)
        epochs = " ".join(f"{a:.3f}" for a in result["refined"])
        print(
            f"| {run_dir} | {result['kmeans']:.3f} | {result['agreement']:.3f} | {epochs} | {result['seconds']:.0f} |",
            flush=True,
        )
    if len(results) > 1:
        last = [r["refined"][-1] for r in results]
        print(f"\nmean: k-means {np.mean([r['kmeans'] for r in results]):.3f}, refined {np.mean(last):.3f}")


if __name__ == "__main__":
    main()
