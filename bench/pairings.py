"""Build two-group HW9 sets from the CIFAR-10 train split (JPEGs in class folders), to judge defaults on more
than one pairing of classes.

    python bench/pairings.py CIFAR10_TRAIN_JPG_TAR_GZ OUT_DIR [--train-per-group 4250] [--val-per-group 250]

Writes OUT_DIR/<pairing>/{trainX,trainY,valX,valY}.npy for each pairing in PAIRINGS (label 1 = first group).
Images are drawn per class with a fixed seed, disjoint between train and val.
"""

from __future__ import annotations

import argparse
import io
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from aeclust.data import ImageSet, export_hw9

PAIRINGS = {
    "pets-vs-roadvehicles": (("cat", "dog"), ("automobile", "truck")),
    "wildlife-vs-craft": (("deer", "horse", "frog"), ("airplane", "ship")),
    "birds-vs-airplanes": (("bird",), ("airplane",)),
}


def read_classes(archive: Path, wanted: set[str]) -> dict[str, list[np.ndarray]]:
    images: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) >= 2 and parts[-2] in wanted:
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                    images[parts[-2]].append((parts[-1], np.asarray(image.convert("RGB"))))
    return {name: [a for _, a in sorted(items, key=lambda t: t[0])] for name, items in images.items()}


def build(archive: Path, out: Path, train_per_group: int, val_per_group: int, seed: int = 0) -> None:
    wanted = {c for groups in PAIRINGS.values() for group in groups for c in group}
    classes = read_classes(archive, wanted)
    rng = np.random.default_rng(seed)
    for pairing, groups in PAIRINGS.items():
        parts = {"train": ([], []), "val": ([], [])}
        for label, group in ((1, groups[0]), (0, groups[1])):
            # Equal groups whatever their number of classes, so a two-way split is balanced.
            n_train, n_val = train_per_group // len(group), val_per_group // len(group)
            for name in group:
                chosen = rng.permutation(len(classes[name]))[: n_train + n_val]
                for split, idx in (("train", chosen[:n_train]), ("val", chosen[n_train:])):
                    parts[split][0].extend(classes[name][i] for i in idx)
                    parts[split][1].extend([label] * len(idx))
        order = {split: rng.permutation(len(parts[split][1])) for split in parts}
        x = {s: np.stack(parts[s][0])[order[s]] for s in parts}
        y = {s: np.array(parts[s][1], dtype=np.uint8)[order[s]] for s in parts}
        images = ImageSet(pairing, x["train"], x["val"], y["val"], y["train"], class_names=["group B", "group A"])
        export_hw9(images, out / pairing, overwrite=True)
        print(f"{out / pairing}: {len(y['train'])} train, {len(y['val'])} val; 1 = {'+'.join(groups[0])}, 0 = {'+'.join(groups[1])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-per-group", type=int, default=4250, help="train images per group (default 4250)")
    parser.add_argument("--val-per-group", type=int, default=250, help="val images per group (default 250)")
    args = parser.parse_args()
    build(args.archive, args.out, args.train_per_group, args.val_per_group)


if __name__ == "__main__":
    main()
