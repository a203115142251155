"""Wall time of (a) the course pipeline and (b) aeclust's default, stage by stage, side by side in one run.

    python bench/speed.py [--out DIR] [--growth CIFAR10_TRAIN_ARCHIVE] [--reuse]

(a) is the `baseline` preset: the study's model, 20 epochs, KernelPCA → scikit-learn t-SNE → k-means.
(b) is the default model (`aeclust run` with no options). Both run on the embedded set with seed 0; --reuse reads
runs that finished in --out before. With --growth, the default's clustering stage is also timed at N = 2,000,
8,500 and 50,000 latents (the 50,000 from the CIFAR-10 train archive, encoded by (b)'s model).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from aeclust.cluster import cluster_latents
from aeclust.data import ImageSet, load_images
from aeclust.data.embedded import decode_archive, embedded_archive
from aeclust.infer import infer
from aeclust.pipeline import run
from aeclust.presets import DEFAULT_MODEL, preset
from aeclust.refine import refine_clusters
from aeclust.rundir import RunDir
from aeclust.train import load_model


def timed_run(name: str, out: Path, reuse: bool) -> tuple[dict, Path]:
    run_dir, config = RunDir(out / name), preset(name)
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
    latents = infer(model, images.train_images).latents.numpy()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-speed"))
    parser.add_argument("--growth", type=Path, help="CIFAR-10 train archive for the N = 50,000 point")
    parser.add_argument("--reuse", action="store_true", help="read finished runs in --out instead of running again")
    args = parser.parse_args()

    started = time.perf_counter()
    decode_archive(embedded_archive())
    decode_seconds = time.perf_counter() - started

    columns = {}
    for label, name in (("(a) course", "baseline"), ("(b) default", DEFAULT_MODEL)):
        metrics, run_dir = timed_run(name, args.out, args.reuse)
        columns[label] = (metrics, stage_rows(metrics, decode_seconds, time_report(run_dir, args.out)), run_dir)

    (a_metrics, a, _), (b_metrics, b, b_dir) = columns.values()
    print("\n| stage | (a) course, s | (b) default, s | b/a |\n|---|---|---|---|")
    for stage in a:
        ratio = f"{b[stage] / a[stage]:.2f}" if a[stage] > 0 else "–"
        print(f"| {stage} | {a[stage]:.1f} | {b[stage]:.1f} | {ratio} |")
    for key in ("val_accuracy", "train_accuracy"):
        print(f"| {key} | {a_metrics.get(key, float('nan')):.3f} | {b_metrics.get(key, float('nan')):.3f} | |")
    print(f"\nend-to-end ratio b/a: {b['end to end (run + report)'] / a['end to end (run + report)']:.2f}")
    if args.growth:
        growth(args.growth, b_dir)


if __name__ == "__main__":
    main()
