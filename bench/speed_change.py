"""A budget kept when the machine's speed changes part-way: `aeclust run --budget B` while busy processes compete
for the cores during the first part of the run, and then stop.

    python bench/speed_change.py [--budget 10m] [--load-share 0.7] [--load-processes 1] [--data SOURCE]
                                 [--seed 0] [--out DIR] [--src NAME=SRC_DIR ...]

A plan is made from the run's own speed and made again part-way (after the first epoch, a third, two thirds and five
sixths of the way, and after any epoch whose pace is more than a tenth of the budget off the plan); before the last
of those rules, a machine that sped up or slowed down after the last planned epoch ended the run early or late
(docs/results.md, sections 29 and 30). This sets that scene on purpose: --load-processes busy loops run from the start
for --load-share of the budget, then are killed, and the run's epochs speed up. Each --src (a checkout's src folder,
say one saved before a change to the planning, named NAME; default: this checkout's) runs the same budget, seed and
load in its own process, one after another, so their plans are compared under the same change. The machine must be
otherwise idle.

Prints per version: the plans (epochs, and after which epoch each was made), an epoch's mean seconds under the load
and after it, the epochs trained, train accuracy, wall seconds and wall / budget (a run should end within 10 % of its
budget); writes results.json under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from aeclust.budget.durations import parse_duration
from aeclust.budget.plan import BudgetPlan
from aeclust.config import TrainConfig
from aeclust.encoders.autoencoder import schedule_epochs
from aeclust.pipeline.rundir import RunDir
from aeclust.runtime.io import write_text_atomic

EMBEDDED = "animals-vs-vehicles"
BUSY_LOOP = "while True: pass"


def run_under_load(name: str, src: Path, args: argparse.Namespace, run_dir: Path) -> dict:
    """One budgeted run of the aeclust in ``src`` with ``args.load_processes`` busy loops beside it for the first
    ``args.load_share`` of its budget; its figures."""
    budget_seconds = parse_duration(args.budget)
    command = [sys.executable, "-m", "aeclust", "run", "--budget", args.budget, "--seed", str(args.seed)]
    command += ["--out", str(run_dir)] + (["--data", args.data] if args.data != EMBEDDED else [])
    environment = os.environ | {"PYTHONPATH": str(src)}
    print(f"$ PYTHONPATH={src}", " ".join(command), file=sys.stderr, flush=True)
    loads = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.load_processes)]
    load_seconds = args.load_share * budget_seconds
    started = time.perf_counter()
    try:
        run = subprocess.Popen(command, env=environment)
        try:
            run.wait(timeout=load_seconds)
        except subprocess.TimeoutExpired:
            pass
    finally:
        for load in loads:
            load.kill()
            load.wait()
    load_ended = time.perf_counter() - started
    if run.wait() != 0:
        raise SystemExit(f"{name}: the run failed (exit {run.returncode}); see its output above")
    wall = time.perf_counter() - started
    return figures(name, src, run_dir, budget_seconds, load_ended, wall)


def figures(name: str, src: Path, run_dir: Path, budget_seconds: float, load_ended: float, wall: float) -> dict:
    """A finished run's figures; ``load_ended`` and ``wall`` are seconds from the run's process start."""
    directory = RunDir(run_dir)
    metrics, history, train = directory.read_metrics(), directory.read_history(), directory.read_config().train
    timings, speeds = metrics["timings"], BudgetPlan.load(directory.budget).speeds
    # When each epoch ended, from the process start, by the epochs' own times after what came before the first
    # (starting Python and importing, reading the images, measuring the speeds): which ones ran under the load.
    ended = (wall - timings["total_seconds"]) + timings["load_seconds"] + speeds.measuring_seconds
    under, after = [], []
    for index, record in enumerate(history):
        ended += record.train_seconds + record.eval_seconds
        if index:  # the first epoch reads the images and warms up
            (under if ended <= load_ended else after).append(record.train_seconds)
    return {
        "name": name, "src": str(src), "budget_seconds": budget_seconds, "load_seconds": load_ended,
        "epochs": metrics["epochs"], "plans": plans_text(train),
        "epoch_seconds_under_load": statistics.mean(under) if under else None,
        "epoch_seconds_after": statistics.mean(after) if after else None,
        "train_accuracy": metrics.get("train_accuracy"), "wall_seconds": wall,
        "taken_seconds": metrics["budget"]["taken_seconds"],
    }  # fmt: skip


def plans_text(train: TrainConfig) -> str:
    """The epochs of each plan a run followed in turn, with the epoch after which the next was made, e.g.
    "13 →(1) 12 →(4) 14": the plan in force at each such epoch is the one its schedule was laid out over."""
    parts = [f"{train.provisional_epochs} →(1)"] if train.provisional_epochs else []
    parts += [f"{schedule_epochs(train, at)} →({at})" for at in train.replanned_after]
    return " ".join([*parts, str(train.epochs)])


def table(results: list[dict]) -> str:
    def figure(value: float | None, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "| version | plans: epochs →(after epoch) | epoch s under load | epoch s after | epochs | train accuracy "
        "| wall s | wall / budget |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        cells = [
            result["name"], result["plans"], figure(result["epoch_seconds_under_load"], 1),
            figure(result["epoch_seconds_after"], 1), str(result["epochs"]), figure(result["train_accuracy"], 3),
            figure(result["wall_seconds"], 0), figure(result["wall_seconds"] / result["budget_seconds"], 2),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def source_folder(text: str) -> tuple[str, Path]:
    name, _, folder = text.partition("=")
    if not folder or not (Path(folder) / "aeclust").is_dir():
        raise argparse.ArgumentTypeError(
            f"expected NAME=SRC_DIR, SRC_DIR holding the aeclust package, found {text!r}"
        )
    return name, Path(folder).resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="10m")
    parser.add_argument("--load-share", type=float, default=0.7, help="share of the budget the load runs for")
    parser.add_argument("--load-processes", type=int, default=1)
    parser.add_argument("--data", default=EMBEDDED)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-out/speed-change"))
    parser.add_argument("--src", type=source_folder, action="append", help="NAME=SRC_DIR, repeatable")
    args = parser.parse_args()
    if not 0 < args.load_share < 1:
        parser.error(f"--load-share: expected a share of the budget between 0 and 1, found {args.load_share}")
    sources = args.src or [("this checkout", Path(__file__).resolve().parents[1] / "src")]
    if len({name for name, _ in sources}) != len(sources):
        parser.error("--src: each version needs a name of its own")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for index, (name, src) in enumerate(sources):
        run_dir = args.out / f"run-{index}"
        if run_dir.exists():
            raise SystemExit(f"{run_dir}: already exists; move it away or pass another --out")
        results.append(run_under_load(name, src, args, run_dir))
        write_text_atomic(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    print(
        f"\n{args.budget} on {args.data}, seed {args.seed}, {args.load_processes} busy process(es) for the first "
        f"{args.load_share:.0%} of the budget\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
