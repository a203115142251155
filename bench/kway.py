"""Many-group clustering on CIFAR-10: ten-way, five-way, three-way (balanced and 70/20/10 %), and the two-group
pairings, each beside two anchors measured in the same run: k-means on raw pixels, and the study's baseline.

    python bench/kway.py CIFAR10_TRAIN_JPG_TAR_GZ [--sets cifar10 five three uneven3 pairs] [--methods pixels
                         baseline default] [--seeds 0 1 2] [--per-class N] [--set section.key=value ...] [--out DIR]

The archive is the CIFAR-10 train split as JPEGs in class folders. The sets (written once as HW9 layout, trainX
and trainY only, under OUT/sets; trainY is an answer key, used only to score):

- cifar10: all ten classes, 5,000 images each (or --per-class);
- five: airplane, automobile, bird, cat, deer (the first five classes), 5,000 each;
- three: cat, frog, ship, 5,000 each; uneven3: the same three at 70 / 20 / 10 % (3,500 / 1,000 / 500 images);
- pairs: the embedded animals-vs-vehicles set and bench/pairings.py's three pairings (k = 2).

Prints, per set: method | accuracy (Hungarian; for two groups max(acc, 1 − acc)) | NMI | ARI | wall seconds |
runs, mean ± sd over the seeds, and for uneven3 the predicted cluster shares beside the true ones. Model runs are
ordinary run directories under OUT/SET/METHOD/seedS; a finished one is read back, a stopped one resumed (as
bench/accuracy.py does), so the table fills in over several sittings. Judge by train accuracy: the sets have
no val split.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from aeclust.config import with_settings
from aeclust.data import ImageSet, export_hw9, load_images
from aeclust.data.embedded import EMBEDDED_NAME
from aeclust.errors import ConfigError
from aeclust.metrics import clustering_scores
from aeclust.presets import DEFAULT_MODEL, preset

# The pairings and the run-or-resume logic are the other benchmarks' own; bench/ is no package, so it is put on
# the path (as running a script from it does) for when this file is loaded by path, as the tests do.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import mean_sd, run_or_read  # noqa: E402
from pairings import PAIRINGS, read_classes  # noqa: E402
from pairings import build as build_pairings

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FULL_PER_CLASS = 5000
# Set name → {class: its number of images, as a share of --per-class}.
SUBSETS: dict[str, dict[str, float]] = {
    "cifar10": {name: 1.0 for name in CIFAR10_CLASSES},
    "five": {name: 1.0 for name in CIFAR10_CLASSES[:5]},
    "three": {"cat": 1.0, "frog": 1.0, "ship": 1.0},
    # 70 / 20 / 10 % of its images: 3,500 / 1,000 / 500 at the full 5,000 per class.
    "uneven3": {"cat": 0.7, "ship": 0.2, "frog": 0.1},
}
PAIR_SETS = (EMBEDDED_NAME, *PAIRINGS)
METHODS = {"pixels": None, "baseline": "baseline", "default": DEFAULT_MODEL}
PIXEL_COMPONENTS = 50


def subset_dir(out: Path, name: str, per_class: int) -> Path:
    return out / "sets" / (name if per_class == FULL_PER_CLASS else f"{name}-{per_class}pc")


def build_subsets(archive: Path, out: Path, names: list[str], per_class: int) -> None:
    """Write the subsets not written yet, each class's images drawn with a fixed seed."""
    missing = [name for name in names if not (subset_dir(out, name, per_class) / "trainY.npy").is_file()]
    if not missing:
        return
    print(f"reading {archive} for {', '.join(missing)}", flush=True)
    classes = read_classes(archive, set(CIFAR10_CLASSES))
    for name in missing:
        rng = np.random.default_rng(0)
        images, labels = [], []
        for label, (class_name, share) in enumerate(SUBSETS[name].items()):
            count = round(per_class * share)
            chosen = rng.permutation(len(classes[class_name]))[:count]
            images.extend(classes[class_name][i] for i in chosen)
            labels.extend([label] * len(chosen))
        order = rng.permutation(len(labels))
        subset = ImageSet(
            name, np.stack(images)[order], train_labels=np.array(labels, dtype=np.uint8)[order],
            class_names=list(SUBSETS[name]),
        )  # fmt: skip
        export_hw9(subset, subset_dir(out, name, per_class), overwrite=True)
        print(f"{subset_dir(out, name, per_class)}: {len(labels)} images of {len(SUBSETS[name])} classes", flush=True)


def pixel_kmeans(images: ImageSet, k: int, seed: int) -> dict:
    """The floor: PCA of the raw pixels (scaled to [-1, 1]) to 50 components, then k-means."""
    started = time.perf_counter()
    pixels = images.train_images.reshape(len(images.train_images), -1).astype(np.float32) / 127.5 - 1
    components = min(PIXEL_COMPONENTS, *pixels.shape)
    reduced = PCA(components, svd_solver="randomized", random_state=seed).fit_transform(pixels)
    clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(reduced)
    return {
        "train_scores": clustering_scores(images.train_labels, clusters),
        "cluster_sizes": np.bincount(clusters, minlength=k).tolist(),
        "timings": {"total_seconds": time.perf_counter() - started},
    }


def accuracy_for_k(scores: dict, k: int) -> float:
    """The headline accuracy: max(acc, 1 − acc) for two groups, as the study scores them; Hungarian otherwise."""
    return scores.get("binary_accuracy", scores["accuracy"]) if k == 2 else scores["accuracy"]


def shares(sizes: list[int]) -> str:
    total = sum(sizes)
    return " / ".join(f"{100 * size / total:.0f}" for size in sorted(sizes, reverse=True))


def table(rows: list[tuple[str, int, list[dict]]], true_sizes: list[int] | None) -> str:
    header = "| method | accuracy | NMI | ARI | wall s | runs |" + (" cluster shares % |" if true_sizes else "")
    lines = [header, "|---|---|---|---|---|---|" + ("---|" if true_sizes else "")]
    for method, k, results in rows:
        scores = [r["train_scores"] for r in results]
        line = (
            f"| {method} | {mean_sd([accuracy_for_k(s, k) for s in scores])} | {mean_sd([s['nmi'] for s in scores])} "
            f"| {mean_sd([s['ari'] for s in scores])} "
            f"| {statistics.mean(r['timings']['total_seconds'] for r in results):.0f} | {len(results)} |"
        )
        if true_sizes:
            line += " " + ", ".join(shares(r["cluster_sizes"]) for r in results) + " |"
        lines.append(line)
    if true_sizes:
        lines.append(f"\ntrue shares %: {shares(true_sizes)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path, help="the CIFAR-10 train split as a .tar.gz of JPEGs in class folders")
    parser.add_argument("--sets", nargs="*", default=[*SUBSETS, "pairs"], choices=[*SUBSETS, "pairs"])
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--per-class", type=int, default=FULL_PER_CLASS, help="images per class of the CIFAR-10 subsets (default 5000)"
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", dest="settings",
        help="change settings of the default model's runs (see aeclust models), e.g. train.epochs=20",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/bench-kway"))
    args = parser.parse_args()
    if not 1 <= args.per_class <= FULL_PER_CLASS:
        parser.error(f"--per-class {args.per_class}: expected 1..{FULL_PER_CLASS}")
    try:
        with_settings(preset(DEFAULT_MODEL), args.settings)  # refuse a typo before hours of runs, not after
    except ConfigError as error:
        parser.error(str(error))
    subsets = [name for name in args.sets if name in SUBSETS]
    build_subsets(args.archive, args.out, subsets, args.per_class)
    data_sets = [(name, str(subset_dir(args.out, name, args.per_class))) for name in subsets]
    if "pairs" in args.sets:
        pairs_dir = args.out / "sets" / "pairs"
        if not all((pairs_dir / name / "trainY.npy").is_file() for name in PAIRINGS):
            build_pairings(args.archive, pairs_dir, 4250, 250)
        data_sets += [(name, name if name == EMBEDDED_NAME else str(pairs_dir / name)) for name in PAIR_SETS]
    for set_name, data in data_sets:
        images = load_images(data)
        k = len(np.unique(images.train_labels))
        folder = args.out / Path(data).name
        rows = []
        for method in args.methods:
            if METHODS[method] is None:
                results = [pixel_kmeans(images, k, seed) for seed in args.seeds]
            else:
                settings = [f"cluster.k={k}"] + (args.settings if method == "default" else [])
                results = [
                    run_or_read(METHODS[method], data, seed, None, folder / method, images, settings)
                    for seed in args.seeds
                ]
            name = method if METHODS[method] is None else f"{method} ({METHODS[method]})"
            rows.append((name + ("".join(f" +{s}" for s in args.settings) if method == "default" else ""), k, results))
        true_sizes = sorted(Counter(images.train_labels.tolist()).values(), reverse=True)
        uneven = max(true_sizes) > 1.5 * min(true_sizes)
        print(
            f"\n{set_name}: {len(images.train_images)} images, k = {k}, seeds {args.seeds}\n"
            f"{table(rows, true_sizes if uneven else None)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
