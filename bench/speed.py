"""Wall time of the course pipeline and of aeclust's default, stage by stage, side by side in one run.

    python bench/speed.py [--out DIR] [--runs course lean default] [--growth CIFAR10_TRAIN_ARCHIVE]
                          [--processes N] [--reuse]

(a) course: the `baseline` preset as bench/speed.py always ran it: the study's model, 20 epochs, with the study's
    per-epoch history (train MSE over every image and a val clustering after each epoch), then KernelPCA →
    scikit-learn t-SNE → k-means.
(a′) lean course: the same, as the course's own sample code runs it: 20 epochs, then KernelPCA, t-SNE and k-means
    once, with no per-epoch evaluation (`train.mse_every=0`, `train.val_every=0`).
(b) default: the default model (`aeclust run` with no options).
All run on the embedded set with seed 0, one after another (--runs picks which; by default all three); --reuse
reads runs that finished in --out before. With --growth, the default's clustering stage is also timed at
N = 2,000, 8,500 and 50,000 latents (the 50,000 from the CIFAR-10 train archive, encoded by (b)'s model). With
--processes N, (b) is run again under `torchrun --nproc_per_node=N` (gloo on a CPU, NCCL on GPUs) and timed
beside (b).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from aeclust.cluster.stage import cluster_latents
from aeclust.config import with_settings
from aeclust.data import ImageSet, load_images
from aeclust.data.embedded import decode_archive, embedded_archive
from aeclust.encoders.autoencoder import load_model
from aeclust.pipeline.run import run
from aeclust.pipeline.rundir import RunDir
from aeclust.presets import DEFAULT_MODEL, preset
from aeclust.refine.scan import refine_clusters
from aeclust.runtime.infer import infer

# label → (preset, settings, run folder)
RUNS = {
    "course": ("(a) course", "baseline", [], "baseline"),
    "lean": ("(a′) lean course", "baseline", ["train.mse_every=0", "train.val_every=0"], "baseline-lean"),
    "default": ("(b) default", DEFAULT_MODEL, [], DEFAULT_MODEL),
}


def timed_run(name: str, out: Path, reuse: bool, settings: list[str] = (), folder: str | None = None):
    run_dir, config = RunDir(out / (folder or name)), with_settings(preset(name), list(settings))
    if reuse and run_dir.metrics.is_file():
        # A preset changes between releases; timing its old settings as "the default" would mislead.
        if run_dir.read_config() != config:
            raise SystemExit(
                f"{run_dir.path}: holds a run with other settings than {name} has now; "
                "move it away, pass another --out, or leave out --reuse to time it afresh"
            )
        return run_dir.read_metrics(), run_dir.path
    result = run(config, run_dir.path, force=run_dir.path.exists())
    return result.metrics, result.run_dir


def stage_rows(metrics: dict, decode_seconds: float, report_seconds: float) -> dict[str, float]:
    t = metrics["timings"]
    return {
        "decode (embedded JPEGs)": decode_seconds,
        "training, per epoch": t["train_seconds"] / max(1, metrics["epochs"]),
        "training, all epochs": t["train_seconds"],
        # The last epoch's history step also yields the final latents and the val clustering, so "latent
        # extraction" is near zero unless the run was resumed after its last epoch.
        "per-epoch history (MSE + val clustering)": t["epoch_eval_seconds"],
        "latent extraction": t["latent_seconds"],
        "reduction (train)": t["train_reduce_step_seconds"],
        "2-D embedding (train)": t["train_embed_step_seconds"],
        "clustering (train)": t["train_cluster_step_seconds"],
        "refinement (neighbour consistency)": t.get("refine_seconds", 0.0),
        "report": report_seconds,
        "end to end (run + report)": t["total_seconds"] + report_seconds,
    }


def time_report(run_dir: Path, out: Path) -> float:
    from aeclust.report import build_report

    started = time.perf_counter()
    build_report([run_dir], out / f"report-{run_dir.name}", force=True)
    return time.perf_counter() - started


def torchrun_default(processes: int, out: Path, reuse: bool) -> dict:
    """The default on the embedded set, seed 0, in ``processes`` processes started by torchrun."""
    run_dir = RunDir(out / f"{DEFAULT_MODEL}-torchrun{processes}")
    if reuse and run_dir.metrics.is_file():
        return run_dir.read_metrics()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*launcher, "-m", "aeclust", "run", "--seed", "0", "--out", str(run_dir.path), "--force"]
    subprocess.run(command, check=True)
    return run_dir.read_metrics()


def processes_table(one: dict, many: dict, processes: int) -> None:
    print(f"\n| the default, embedded set | 1 process, s | {processes} processes, s | ratio |\n|---|---|---|---|")
    rows = {
        "training, per epoch": lambda m: m["timings"]["train_seconds"] / max(1, m["epochs"]),
        "per-epoch history": lambda m: m["timings"]["epoch_eval_seconds"],
        "refinement": lambda m: m["timings"].get("refine_seconds", 0.0),
        "end to end (run)": lambda m: m["timings"]["total_seconds"],
    }
    for stage, read in rows.items():
        print(f"| {stage} | {read(one):.1f} | {read(many):.1f} | {read(many) / max(read(one), 1e-9):.2f} |")
    for key in ("train_accuracy", "val_accuracy"):
        print(f"| {key} | {one.get(key, float('nan')):.3f} | {many.get(key, float('nan')):.3f} | |")


def growth(archive: Path, model_run: Path) -> None:
    """Seconds of the default's clustering stage, and of its refinement, at growing N (encoding not counted)."""
    model, _ = load_model(RunDir(model_run).last_checkpoint)
    config = preset(DEFAULT_MODEL)
    cluster = config.cluster
    print(
        f"\nclustering stage of the default ({cluster.latent} latents, {cluster.reducer}, {cluster.embedder}, "
        f"{cluster.clusterer}), then its refinement ({config.refine.total_epochs} epochs)"
    )
    images = load_images(archive)
    latents = infer(model, images.train_images).latents
    print("| N | clustering s | per 1,000 | refinement s | per 1,000 |\n|---|---|---|---|---|")
    for n in (2000, 8500, len(latents)):
        chosen = np.random.default_rng(0).permutation(len(latents))[:n]
        started = time.perf_counter()
        clusters = cluster_latents(latents[chosen], cluster, seed=0).clusters
        seconds = time.perf_counter() - started
        refine_seconds = float("nan")
        if config.refine.total_epochs > 0:
            subset = ImageSet(name=f"{images.name}[{n}]", train_images=images.train_images[chosen])
            started = time.perf_counter()
            refine_clusters(model, subset, config, clusters, log=lambda _: None)
            refine_seconds = time.perf_counter() - started
        print(
            f"| {n} | {seconds:.1f} | {seconds / n * 1000:.2f} | {refine_seconds:.1f} | {refine_seconds / n * 1000:.2f} |",
            flush=True,
        )


def print_columns(columns: dict[str, tuple[dict, dict[str, float], Path]]) -> None:
    """Every stage's seconds per run, then the default's share of each course run's, end to end."""
    labels = list(columns)
    stages = list(next(iter(columns.values()))[1])
    print("\n| stage | " + " | ".join(f"{label}, s" for label in labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for stage in stages:
        print(f"| {stage} | " + " | ".join(f"{columns[label][1][stage]:.1f}" for label in labels) + " |")
    for key in ("val_accuracy", "train_accuracy"):
        values = [columns[label][0].get(key, float("nan")) for label in labels]
        print(f"| {key} | " + " | ".join(f"{value:.3f}" for value in values) + " |")
    end = "end to end (run + report)"
    if "(b) default" in columns:
        for label in labels:
            if label != "(b) default":
                ratio = columns["(b) default"][1][end] / columns[label][1][end]
                print(f"\nend-to-end ratio (b) default / {label}: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-speed"))
    parser.add_argument("--growth", type=Path, help="CIFAR-10 train archive for the N = 50,000 point")
    parser.add_argument("--reuse", action="store_true", help="read finished runs in --out instead of running again")
    parser.add_argument("--processes", type=int, help="also time the default under torchrun with this many processes")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS), help="which runs to time")
    args = parser.parse_args()

    started = time.perf_counter()
    decode_archive(embedded_archive())
    decode_seconds = time.perf_counter() - started

    columns = {}
    for key in args.runs:
        label, name, settings, folder = RUNS[key]
        metrics, run_dir = timed_run(name, args.out, args.reuse, settings, folder)
        columns[label] = (metrics, stage_rows(metrics, decode_seconds, time_report(run_dir, args.out)), run_dir)
    print_columns(columns)
    if "(b) default" not in columns:
        return
    b_metrics, _, b_dir = columns["(b) default"]
    if args.processes:
        processes_table(b_metrics, torchrun_default(args.processes, args.out, args.reuse), args.processes)
    if args.growth:
        growth(args.growth, b_dir)


if __name__ == "__main__":
    main()
