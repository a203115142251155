"""The ``aeclust`` command: each sub-command builds its settings and calls one API function."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from aeclust.errors import AeclustError, ConfigError

EXIT_BAD_INPUT = 2


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from aeclust.presets import DEFAULT_MODEL, MODELS

    parser.add_argument(
        "--data",
        default=None,
        help="a folder of images (sub-folder names become labels for scoring), a .zip/.tar/.tar.gz of one, "
        "a .npy/.npz array, a HW9-layout directory, or the embedded set's name (default)",
    )
    parser.add_argument("--image-size", type=int, help="side in pixels every image is resized to (default 32)")
    parser.add_argument("--model", help=f"one of: {', '.join(MODELS)} (default {DEFAULT_MODEL})")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the model's)")
    parser.add_argument(
        "--budget",
        metavar="DURATION",
        help="the time the run may take, e.g. 5m, 30m, 2h: it measures its own speed and plans its epochs to end "
        "within it (default: the model's own epochs)",
    )
    parser.add_argument("--seed", type=int, help="random seed; the same seed gives the same clusters (default 0)")
    _add_k_options(parser, "number of clusters, or auto to choose it from the data (default 2)")
    parser.add_argument("--batch-size", type=int, help="training batch size")
    parser.add_argument("--lr", type=float, help="Adam learning rate")
    parser.add_argument("--beta", type=float, help="weight of the rotation loss (models with rotation)")
    parser.add_argument("--reducer", help="none | pca | kpca")
    parser.add_argument("--components", type=int, help="components kept by the reducer")
    parser.add_argument("--embedder", help="none | tsne | sklearn-tsne | umap")
    parser.add_argument(
        "--clusterer", help="auto (the default model's) | kmeans | kmeans-merge | whitened-kmeans | gmm | agglomerative"
    )
    parser.add_argument(
        "--refine-epochs", type=int, help="epochs of neighbour-consistency refinement of the clusters (0: none)"
    )
    parser.add_argument("--latent", help="flatten | pool | pool+flatten")
    parser.add_argument("--scaling", help="none | standardize | l2: how latent features are scaled before reducing")
    parser.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    parser.add_argument(
        "--workers", type=int, help="processes reading training batches (default: none on a CPU, a few on a GPU)"
    )
    parser.add_argument(
        "--device", help="auto (default: CUDA when there is a GPU, else the CPU) | cpu | cuda | cuda:N | mps"
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="any other setting shown by `aeclust models`, e.g. --set model.temperature=0.2 (repeatable)",
    )


def _add_k_options(parser: argparse.ArgumentParser, k_help: str, required: bool = False) -> None:
    parser.add_argument("--k", metavar="N|auto", required=required, help=k_help)
    parser.add_argument(
        "--k-range", metavar="LO:HI", help="with --k auto: the numbers of clusters to choose from (default 2:30)"
    )


def _apply_k_range(cluster, k_range: str | None) -> None:
    """Set ``--k-range`` on a cluster configuration whose k is auto; refuse it beside a fixed k, where it does
    nothing."""
    from aeclust.config import AUTO_K, parse_k_range

    if k_range is None:
        return
    if cluster.k != AUTO_K:
        raise ConfigError(f"--k-range {k_range}: expected --k auto beside it, found k={cluster.k}")
    cluster.k_min, cluster.k_max = parse_k_range(k_range)


def build_config(args: argparse.Namespace):
    """The named model's configuration with the command line's overrides applied."""
    from aeclust.config import parse_k
    from aeclust.presets import DEFAULT_MODEL, preset

    config = preset(args.model or DEFAULT_MODEL)
    if args.data is not None:
        config.data = str(args.data)
    config.seed = args.seed if args.seed is not None else 0
    overrides = [
        (config.train, "epochs", args.epochs),
        (config.train, "batch_size", args.batch_size),
        (config.train, "lr", args.lr),
        (config.model, "rotation_weight", args.beta),
        (config.cluster, "k", None if args.k is None else parse_k(args.k)),
        (config.cluster, "reducer", args.reducer),
        (config.cluster, "components", args.components),
        (config.cluster, "embedder", args.embedder),
        (config.cluster, "clusterer", args.clusterer),
        (config.cluster, "latent", args.latent),
        (config.cluster, "scaling", args.scaling),
        (config.refine, "epochs", args.refine_epochs),
        (config, "threads", args.threads),
        (config, "workers", args.workers),
        (config, "device", args.device),
        (config, "image_size", args.image_size),
    ]
    for section, name, value in overrides:
        if value is not None:
            setattr(section, name, value)
    if args.set:
        from aeclust.config import with_settings

        config = with_settings(config, args.set)
    _apply_k_range(config.cluster, args.k_range)
    if args.budget is not None:
        from aeclust.budget.durations import parse_duration
        from aeclust.budget.plan import PLANNED_SETTINGS

        planned = [
            option for option, given in (
                ("--epochs", args.epochs is not None), ("--refine-epochs", args.refine_epochs is not None),
                *((f"--set {item}", True) for item in args.set or [] if item.partition("=")[0] in PLANNED_SETTINGS),
            ) if given
        ]  # fmt: skip
        if planned:
            raise ConfigError(
                f"--budget {args.budget} plans the epochs itself; found {', '.join(planned)} too. Give one or the other"
            )
        config.budget_seconds = parse_duration(args.budget)
    return config


# Options that settle what a run computes. A resumed run keeps its own; it may change only how long it trains
# (--epochs), and where it runs (--threads, --device, --workers).
SETTING_OPTIONS = (
    "data", "image_size", "model", "seed", "k", "k_range", "batch_size", "lr", "beta",
    "reducer", "components", "embedder", "clusterer", "latent", "scaling", "refine_epochs", "set", "budget",
)  # fmt: skip


def refuse_settings_on_resume(args: argparse.Namespace) -> None:
    given = [f"--{name.replace('_', '-')}" for name in SETTING_OPTIONS if getattr(args, name, None) is not None]
    if args.resume is not None and given:
        raise ConfigError(
            f"{args.resume}: --resume continues a run with the settings it was started with; "
            f"found {', '.join(given)} too (only --epochs, --threads, --device and --workers may change). "
            "Start a new run to change them"
        )


def cmd_run(args: argparse.Namespace) -> int:
    started = time.perf_counter()  # before torch is imported: a --budget counts that time too
    refuse_settings_on_resume(args)
    config = build_config(args)  # before importing torch, so a bad option fails at once
    from aeclust.pipeline.run import run

    if args.resume is not None and args.epochs is None:
        # A resumed run keeps its own epoch count: only an explicit --epochs extends it, not the default model's.
        config.train.epochs = 0
    from aeclust.runtime.engine import stop_engine, torchrun_world

    try:
        result = run(
            config, args.out or args.resume, resume=args.resume is not None, force=args.force,
            resume_machine={"threads": args.threads, "device": args.device, "workers": args.workers}, started=started,
        )  # fmt: skip
    finally:
        stop_engine()
    if torchrun_world()[0] == 0:
        _print_result(result.run_dir, result.metrics)
    return 0


def cmd_recluster(args: argparse.Namespace) -> int:
    from aeclust.config import ClusterConfig, parse_k

    cluster = ClusterConfig(k=parse_k(args.k))  # checks --k and --k-range before torch loads
    _apply_k_range(cluster, args.k_range)
    from aeclust.pipeline.run import recluster

    k_range = (cluster.k_min, cluster.k_max) if args.k_range is not None else None
    result = recluster(
        args.run_dir, cluster.k, args.out, k_range=k_range, refine_epochs=args.refine_epochs, settings=args.set or [],
        device=args.device,
    )
    _print_result(result.run_dir, result.metrics)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from aeclust.pipeline.predict import predict

    prediction = predict(args.run_dir, args.data, args.out, device=args.device)
    lines = [f"prediction: {prediction.run_dir}", f"images: {len(prediction.clusters)} ({prediction.method})"]
    if "train_accuracy" in prediction.metrics:
        lines.append(f"accuracy: {prediction.metrics['train_accuracy']:.4f}")
    print("\n".join(lines))
    return 0


def _print_result(run_dir: Path, metrics: dict) -> None:
    lines = [f"run directory: {run_dir}", f"k: {metrics['k']}"]
    for key in ("val_accuracy", "train_accuracy", "val_mse", "train_mse"):
        if key in metrics:
            lines.append(f"{key}: {metrics[key]:.4f}")
    lines.append(f"seconds: {metrics['timings']['total_seconds']:.0f}")
    print("\n".join(lines))


def cmd_score(args: argparse.Namespace) -> int:
    from aeclust.score import score_prediction

    scores = score_prediction(Path(args.prediction), Path(args.answers))
    print(f"{scores['accuracy']:.4f}")
    if args.verbose:
        print(json.dumps(scores, indent=2))
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from aeclust.data import export_hw9, load_images

    for path in export_hw9(load_images(args.source), args.directory, overwrite=args.force):
        print(path)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from aeclust.presets import DEFAULT_MODEL, MODELS, preset

    for name in MODELS:
        settings = preset(name).to_dict()
        print(f"{name}{' (default)' if name == DEFAULT_MODEL else ''}")
        for section in ("model", "train", "cluster", "refine"):
            print(f"  {section:8s} {json.dumps(settings[section])}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aeclust", description="Cluster images with no labels, by autoencoder latents."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="train a model, cluster, and write prediction.csv and metrics")
    _add_run_options(run)
    run.add_argument("--out", help="run directory (default runs/MODEL-TIME); an existing one is never overwritten")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last complete epoch")
    run.add_argument("--force", action="store_true", help="replace the run directory given by --out")
    run.set_defaults(handler=cmd_run)

    recluster = commands.add_parser(
        "recluster", help="cut a finished run into another number of clusters, in a new run directory, without training"
    )
    recluster.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory; it is only read")
    _add_k_options(recluster, "number of clusters, or auto to choose it from the run's latents", required=True)
    recluster.add_argument("--out", help="the new run directory (default RUN_DIR-kN beside it); never overwritten")
    recluster.add_argument(
        "--refine-epochs", type=int, help="epochs of neighbour-consistency refinement (default: the run's own)"
    )
    recluster.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="a cluster.* or refine.* setting, e.g. --set cluster.clusterer=kmeans-merge (repeatable)",
    )
    recluster.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default: the run's own)")
    recluster.set_defaults(handler=cmd_recluster)

    predict = commands.add_parser(
        "predict", help="assign new images to a finished run's clusters, without training or clustering again"
    )
    predict.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory; it is only read")
    predict.add_argument("--data", required=True, help="the images to assign: any source `run --data` takes")
    predict.add_argument("--out", help="where prediction.csv and metrics.json go (default RUN_DIR-predict beside it)")
    predict.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default: the run's own)")
    predict.set_defaults(handler=cmd_predict)

    score = commands.add_parser("score", help="print the accuracy of a prediction.csv against an answer key")
    score.add_argument("prediction", metavar="PREDICTION_CSV")
    score.add_argument("answers", metavar="ANSWERS_NPY")
    score.add_argument("-v", "--verbose", action="store_true", help="also print NMI, ARI and the matching")
    score.set_defaults(handler=cmd_score)

    data = commands.add_parser("data", help="work with data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    export = data_commands.add_parser("export", help="write a data set (default: the embedded one) in HW9 layout")
    export.add_argument("directory", metavar="DIR")
    export.add_argument("--source", default=None, help="what to export (default: the embedded set)")
    export.add_argument("--force", action="store_true", help="replace existing .npy files in DIR")
    export.set_defaults(handler=cmd_data_export)

    models = commands.add_parser("models", help="list the named models")
    models.set_defaults(handler=cmd_models)

    from aeclust.report.cli import add_commands  # report, compare

    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.handler(args)
    except AeclustError as error:
        print(f"aeclust: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "aeclust: interrupted; `aeclust run --resume DIR` continues from the last complete epoch", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
