"""How aeclust's stages grow with the number of images: seconds and peak resident memory per stage, at 10,000,
100,000 and 1,000,000 images, beside the in-memory path (no decoded store) where it can run.

    python bench/scale.py CIFAR10_TRAIN_JPG_TAR_GZ [--sizes 10000 100000 1000000] [--in-memory-up-to 100000]
                          [--full-epoch-up-to 100000] [--epoch-sample-seconds 600] [--out DIR]
    python bench/scale.py --recall RUN_DIR [--neighbours 20]

The sets are made from the 50,000 CIFAR-10 train JPEGs: image i is image i mod 50,000, flipped left-right when
(i div 50,000) is odd and shifted by up to 3 pixels (edge pixels repeated) by a shift that (i div 50,000) picks,
written once as a folder of JPEG files (quality 95, in class folders, so the answer key scores the clusters) under
OUT/sources/N. Each stage runs in a process of its own, so its peak resident memory is its own:

- store: decoding the folder into the store (a fresh cache), then reading it back (the second load);
- run: ``aeclust run --epochs 1 --refine-epochs 1``: its metrics.json times one training epoch, the epoch's
  evaluation (encoding every image), the clustering stage (k-means), neighbour mining and one refinement epoch;
- predict: ``aeclust predict`` of the same folder into the finished run.

Above ``--full-epoch-up-to`` images (an epoch of a million takes over an hour on 2 cores) the training epoch is
sampled: ``aeclust run --epochs 1`` is started, its epoch's progress lines are read for
``--epoch-sample-seconds``, the process is stopped, and the epoch's seconds are its batches at the rate between the
first and the last line read (its peak memory is the process's, up to then). The run itself is then made with
``--epochs 0``: every stage after training, on the untrained model (the same work as on a trained one).

Peak memory is the process's maximum resident set (ru_maxrss), which counts the pages of the memory-mapped store
it has touched. Results go to OUT/results.json as they come, so a stopped benchmark goes on where it stopped.

``--recall RUN_DIR`` measures the approximate neighbour index against exact search on a finished run's
features (its pooled, unit-length latents): recall of the k nearest neighbours and the seconds of each.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from aeclust.data import ImageSet, load_images

BASE_IMAGES = 50_000
SHIFTS = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (2, 2), (-2, 2), (2, -2), (-2, -2), (3, 0), (0, 3)]
RUN_STAGES = {  # metrics.json timing → the row it is reported as
    "train_seconds": "one training epoch",
    "epoch_eval_seconds": "encoding every image (the epoch's evaluation)",
    "latent_seconds": "encoding every image (after no training)",
    "train_cluster_step_seconds": "clustering stage (k-means)",
    "refine_neighbours_seconds": "neighbour mining (once, before the one epoch)",
    "refine_epochs_seconds": "one refinement epoch",
    "refine_encode_seconds": "refinement's encoding (every train image, twice)",
}


def variant(image: np.ndarray, copy: int) -> np.ndarray:
    """The ``copy``-th variant of an image: flipped on odd copies, shifted by the copy's shift."""
    if copy % 2:
        image = image[:, ::-1]
    dx, dy = SHIFTS[(copy // 2) % len(SHIFTS)]
    pad = 3
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    side = image.shape[0]
    return np.ascontiguousarray(padded[pad + dy : pad + dy + side, pad + dx : pad + dx + side])


@functools.lru_cache(maxsize=1)
def base_images(archive: Path) -> ImageSet:
    """The CIFAR-10 images every set is made from: decoded once, through the store, for every size."""
    return load_images(archive)


def make_source(archive: Path, out: Path, count: int) -> Path:
    """A folder of ``count`` JPEGs in class folders, written once (a marker file says it is whole)."""
    folder = out / "sources" / str(count)
    if (folder / ".complete").is_file():
        return folder
    base = base_images(archive)
    if len(base.train_images) < BASE_IMAGES:
        raise SystemExit(f"{archive}: expected the {BASE_IMAGES} CIFAR-10 train images, found {len(base.train_images)}")
    shutil.rmtree(folder, ignore_errors=True)
    for name in base.class_names:
        (folder / name).mkdir(parents=True)
    started = time.perf_counter()
    for index in range(count):
        copy, source = divmod(index, BASE_IMAGES)
        name = base.class_names[base.train_labels[source]]
        Image.fromarray(variant(base.train_images[source], copy)).save(folder / name / f"{index:07d}.jpg", quality=95)
        if index % 100_000 == 99_999:
            print(f"  wrote {index + 1} of {count} images ({time.perf_counter() - started:.0f}s)", flush=True)
    (folder / ".complete").write_text("")
    return folder


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run ``command``; its wall seconds, its peak resident memory in GB, and its exit code."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 2**20, process.returncode


OF_TRAINING = ("train_seconds", "epoch_eval_seconds")  # a run of no epochs has neither
AFTER_TRAINING = ("latent_seconds",)  # a run that trained encoded in its epoch's evaluation: nothing is left to time
EPOCH_PROGRESS = re.compile(r"epoch 1/1: ([\d,]+) of ([\d,]+) batches")


def sampled_epoch(command: list[str], env: dict[str, str], seconds: float) -> tuple[float, float, int]:
    """Start ``command`` (a one-epoch run), read its epoch's progress lines for ``seconds``, stop it; the epoch's
    seconds at the rate between the first and the last line read, its peak memory in GB, and how many batches ran."""
    process = subprocess.Popen(command, env=env | {"PYTHONUNBUFFERED": "1"}, stderr=subprocess.PIPE, text=True)
    first = last = None
    for line in process.stderr:
        print(line, end="", file=sys.stderr, flush=True)
        match = EPOCH_PROGRESS.search(line)
        if match is None:
            continue
        done, total = (int(group.replace(",", "")) for group in match.groups())
        last = (time.perf_counter(), done, total)
        first = first or last
        if last[0] - first[0] >= seconds:
            break
    # A run stopped mid-epoch (the benchmark deletes its directory). Not Popen.kill: it reaps a process that has
    # already ended, and wait4 then has nothing left to report.
    os.kill(process.pid, signal.SIGKILL)
    _, _, usage = os.wait4(process.pid, 0)
    process.stderr.close()
    if first is None or last[1] == first[1]:
        raise SystemExit(
            f"{' '.join(command)}: its epoch showed no progress to time (need --epoch-sample-seconds >= 60)"
        )
    rate = (last[1] - first[1]) / (last[0] - first[0])
    return last[2] / rate, usage.ru_maxrss / 2**20, last[1]


def stage_rows(
    source: Path, out: Path, count: int, in_memory: bool, full_epoch: bool = True, sample_seconds: float = 600
) -> list[dict]:
    """Every stage at ``count`` images, by the store's path and (``in_memory``) by the in-memory one; the training
    epoch sampled (see the module's text) unless ``full_epoch``."""
    rows = []
    python = [sys.executable]
    env = os.environ | {"AECLUST_CACHE": str(out / "cache")}
    shutil.rmtree(out / "cache", ignore_errors=True)
    load = ["-c", f"from aeclust.data import load_images; print(len(load_images({str(source)!r}).train_images))"]
    for stage in ("store build", "store read back"):
        seconds, memory, code = measured(python + load, env)
        rows.append({"stage": stage, "path": "store", "seconds": seconds, "memory_gb": memory, "exit": code})
    for path in ("store", "in-memory") if in_memory else ("store",):
        run_dir = out / "runs" / f"{count}-{path}"
        shutil.rmtree(run_dir, ignore_errors=True)
        path_env = env | ({"AECLUST_STORE": "0"} if path == "in-memory" else {})
        command = ["-m", "aeclust", "run", "--data", str(source), "--epochs", "1", "--refine-epochs", "1"]
        stage = "whole run"
        if not full_epoch:
            sampled = python + command + ["--out", str(run_dir)]
            seconds, memory, batches = sampled_epoch(sampled, path_env, sample_seconds)
            label = f"one training epoch (its first {batches:,} batches timed)"
            rows.append({"stage": label, "path": path, "seconds": seconds, "memory_gb": memory, "exit": 0})
            shutil.rmtree(run_dir, ignore_errors=True)
            command[command.index("--epochs") + 1] = "0"
            stage = "whole run after no training (--epochs 0)"
        seconds, memory, code = measured(python + command + ["--out", str(run_dir)], path_env)
        rows.append({"stage": stage, "path": path, "seconds": seconds, "memory_gb": memory, "exit": code})
        if code == 0:
            timings = json.loads((run_dir / "metrics.json").read_text())["timings"]
            rows += [
                {"stage": label, "path": path, "seconds": timings[key], "memory_gb": None, "exit": 0}
                for key, label in RUN_STAGES.items()
                if key in timings and key not in (AFTER_TRAINING if full_epoch else OF_TRAINING)
            ]
            predict_dir = out / "runs" / f"{count}-{path}-predict"
            shutil.rmtree(predict_dir, ignore_errors=True)
            command = ["-m", "aeclust", "predict", str(run_dir), "--data", str(source), "--out", str(predict_dir)]
            seconds, memory, code = measured(python + command, path_env)
            rows.append({"stage": "predict", "path": path, "seconds": seconds, "memory_gb": memory, "exit": code})
    return rows


def table(results: dict[str, list[dict]]) -> str:
    lines = [
        "| images | stage | store: s | store: peak GB | in memory: s | in memory: peak GB |",
        "|---|---|---|---|---|---|",
    ]
    for count, rows in results.items():
        stages = list(dict.fromkeys(row["stage"] for row in rows))
        for stage in stages:
            cells = []
            for path in ("store", "in-memory"):
                found = [row for row in rows if row["stage"] == stage and row["path"] == path]
                if not found:
                    cells += ["", ""]
                    continue
                row = found[0]
                failed = f" (exit {row['exit']})" if row["exit"] else ""
                memory = "" if row["memory_gb"] is None else f"{row['memory_gb']:.2f}"
                cells += [f"{row['seconds']:.1f}{failed}", memory]
            lines.append(f"| {int(count):,} | {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recall(run_dir: Path, neighbours: int) -> None:
    import torch

    from aeclust.cluster.features import latent_features
    from aeclust.cluster.neighbours import nearest_neighbours
    from aeclust.pipeline.rundir import RunDir

    features = latent_features(RunDir(run_dir).load_array("train_latents"), "pool", "l2").astype(np.float32)
    started = time.perf_counter()
    exact = nearest_neighbours(features, neighbours, exact_limit=len(features))
    exact_seconds = time.perf_counter() - started
    started = time.perf_counter()
    approximate = nearest_neighbours(features, neighbours, exact_limit=0)
    approximate_seconds = time.perf_counter() - started
    found = (approximate[:, :, None] == exact[:, None, :]).any(2).float().mean().item()
    same_first = torch.eq(approximate[:, 0], exact[:, 0]).float().mean().item()
    print(f"{run_dir}: {len(features)} points of {features.shape[1]} numbers, {neighbours} neighbours each")
    print("| search | seconds | recall of the true neighbours | nearest one right |\n|---|---|---|---|")
    print(f"| exact | {exact_seconds:.1f} | 1.000 | 1.000 |")
    print(f"| faiss IVF | {approximate_seconds:.1f} | {found:.3f} | {same_first:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", nargs="?", type=Path, help="the CIFAR-10 train JPEGs in class folders (.tar.gz)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--in-memory-up-to", type=int, default=100_000, help="largest N to also run without a store")
    parser.add_argument("--full-epoch-up-to", type=int, default=100_000, help="largest N to train a whole epoch on")
    parser.add_argument("--epoch-sample-seconds", type=float, default=600, help="how long a sampled epoch is timed")
    parser.add_argument("--out", type=Path, default=Path("bench-scale"))
    parser.add_argument("--recall", type=Path, metavar="RUN_DIR", help="only measure neighbour recall on this run")
    parser.add_argument("--neighbours", type=int, default=20)
    args = parser.parse_args()
    if args.recall is not None:
        recall(args.recall, args.neighbours)
        return
    if args.archive is None:
        parser.error("the CIFAR-10 archive is needed (or --recall RUN_DIR)")
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for count in args.sizes:
        if str(count) not in results:
            print(f"{count} images", flush=True)
            source = make_source(args.archive, args.out, count)
            results[str(count)] = stage_rows(
                source, args.out, count, count <= args.in_memory_up_to, count <= args.full_epoch_up_to,
                args.epoch_sample_seconds,
            )  # fmt: skip
            results_path.write_text(json.dumps(results, indent=1))
        print(table({str(count): results[str(count)]}), flush=True)
    print("\n" + table({str(count): results[str(count)] for count in args.sizes}))


if __name__ == "__main__":
    main()
