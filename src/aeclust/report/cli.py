"""``aeclust report`` and ``aeclust compare``: registered on the main parser by :func:`add_commands`."""

from __future__ import annotations

import argparse
from pathlib import Path

from aeclust.report import COMPARED_MODELS, DEFAULT_INDICES


def _print_result(index_path: Path) -> None:
    from aeclust.report.build import TABLE_FILE

    print((index_path.parent / TABLE_FILE).read_text(), end="")
    print(f"report: {index_path}")


def cmd_report(args: argparse.Namespace) -> int:
    from aeclust.data import load_images
    from aeclust.report.build import build_report

    images = load_images(args.data) if args.data is not None else None
    index_path = build_report(args.run_dirs, args.out, args.indices, images=images, force=args.force)
    _print_result(index_path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from aeclust.report.build import compare

    index_path = compare(
        args.data,
        models=args.models,
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
        image_size=args.image_size,
        out=args.out,
        indices=args.indices,
        force=args.force,
    )
    _print_result(index_path)
    return 0


def _add_indices(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--indices",
        type=int,
        nargs="+",
        default=list(DEFAULT_INDICES),
        metavar="I",
        help=f"trainX indices to show over their reconstructions (default {' '.join(map(str, DEFAULT_INDICES))})",
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``report`` and ``compare`` on the ``aeclust`` command's sub-commands."""
    report = subparsers.add_parser("report", help="build an HTML report (index.html and figures) from finished runs")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories, one per model")
    report.add_argument(
        "--out", required=True, metavar="DIR", help="report directory; an existing one is never overwritten"
    )
    report.add_argument("--data", help="the runs' images, when they have moved (default: each run's config.data)")
    _add_indices(report)
    report.add_argument("--force", action="store_true", help="replace the report directory given by --out")
    report.set_defaults(handler=cmd_report)

    compare = subparsers.add_parser(
        "compare", help="train baseline and improved on the same data and seed, then report both"
    )
    compare.add_argument("--data", default=None, help="a HW9-layout directory, or the embedded set's name (default)")
    compare.add_argument(
        "--models",
        nargs="+",
        default=list(COMPARED_MODELS),
        metavar="MODEL",
        help=f"named models to train (default {' '.join(COMPARED_MODELS)}; `aeclust models` lists them)",
    )
    compare.add_argument("--epochs", type=int, help="training epochs for every model (default: each model's)")
    compare.add_argument("--seed", type=int, default=0, help="random seed, the same for every model")
    compare.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    compare.add_argument("--image-size", type=int, help="side in pixels every image is resized to (default 32)")
    compare.add_argument(
        "--out", metavar="DIR", help="report directory, runs in DIR/runs (default runs/compare-TIME); never overwritten"
    )
    _add_indices(compare)
    compare.add_argument("--force", action="store_true", help="replace the report directory given by --out")
    compare.set_defaults(handler=cmd_compare)
