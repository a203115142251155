"""Accuracy against the time a run is given: `aeclust run --budget B` at several budgets, side by side.

    python bench/budget.py [--data NAME=SOURCE ...] [--budgets 5m 20m 60m 150m] [--seeds 0 1 2]
                           [--all-seeds-up-to 20m] [--ten-way SOURCE] [--ten-way-budget 60m]
                           [--out DIR] [--kept JSON] [--figure PNG] [--only NAME/BUDGET ...] [--read-only]
                           [--set SECTION.KEY=VALUE ... --kept JSON --against JSON]

Each run is `python -m aeclust run --budget B --seed S --data SOURCE` in its own process, timed from its start to
its end (wall seconds, imports included), the machine otherwise left alone. Budgets up to --all-seeds-up-to run
every seed, longer ones the first seed only. --data defaults to the embedded set; add a pairing, e.g.
--data birds-vs-airplanes=/tmp/pairs/birds-vs-airplanes (bench/pairings.py builds them). --ten-way adds ten-way
clustering (--k 10) of that source (the CIFAR-10 train split, a folder of class folders) at --ten-way-budget.

A run that finished under --out is read back, not run again, and so is one whose figures --kept holds
(docs/budget-runs.json: every finished run's figures, settings and plan, kept in the repository because a machine's
run directories do not outlive its session), so the curve grows over several sittings; a run of an earlier
default's recipe is refused (one curve, one recipe). One that was stopped part-way is started again (a resumed
run's time would not be one sitting's). --only runs just those sets and budgets (others are read back
where they finished); --read-only runs nothing and tabulates what finished.

--set runs a variant of the default (e.g. --set model.momentum=0.99) and needs a --kept file of its own (a variant
never enters docs/budget-runs.json); --against docs/budget-runs.json prints the default's kept runs of the same sets,
budgets and seeds beside it, as "NAME (default)". Prints per set and budget: epochs
planned, train accuracy (mean ± sd, and per seed), NMI, a training batch's seconds as each run's plan took it, wall
seconds and the range of wall/budget (every run should end within 10 % of its budget); writes results.json under
--out and, with --figure, accuracy against budget as a figure.

What a budget buys depends on the machine: the same 2-core kind ran a batch in 0.40 s one day and 0.73–0.80 s
another (docs/results.md, section 23), so a curve grown over several sittings shows each run's batch time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from aeclust.budget.costs import WHITENED_CLUSTERER, whitens_instead_of_refining
from aeclust.budget.durations import parse_duration
from aeclust.budget.plan import PLANNED_SETTINGS, BudgetPlan
from aeclust.config import RunConfig, with_settings
from aeclust.errors import ConfigError
from aeclust.pipeline.rundir import RunDir
from aeclust.presets import DEFAULT_MODEL, preset
from aeclust.runtime.io import write_text_atomic
from aeclust.runtime.progress import format_duration

EMBEDDED = "animals-vs-vehicles"
DEFAULT_KEPT = Path("docs/budget-runs.json")


def recipe(config: RunConfig) -> tuple:
    """What a budget leaves as the default has it: every setting but those it plans (the clusterer among them), the
    data, seed and k."""
    planned = with_settings(config, [f"{setting}=1" for setting in PLANNED_SETTINGS])
    return planned.model, planned.train, replace(planned.cluster, k=0, clusterer="auto"), planned.refine


def kept_run(run_dir: Path) -> dict:
    """What the curve keeps of a finished run: its figures, settings, plan and number of train images. A run
    directory (checkpoints, arrays) is too large to keep in the repository, and this machine's is lost with it."""
    directory = RunDir(run_dir)
    return {
        "record": json.loads((run_dir / "bench-budget.json").read_text()),
        "config": directory.read_config().to_dict(),
        "plan": json.loads(directory.budget.read_text()),
        "train_images": len(directory.load_array("train_clusters", mmap=True)),
    }


def checked(kept: dict, where: str, remedy: str, settings: Sequence[str] = ()) -> dict:
    """A kept run's figures, with a training batch's seconds as its plan last took them (from its first epoch where
    it planned again); ``where`` and ``remedy`` name it and how to be rid of it when it is not today's recipe (with
    ``settings``: today's default so changed)."""
    # One curve, one recipe: a run of an earlier default read back beside today's would mislead.
    config, record, plan = RunConfig.from_dict(kept["config"]), kept["record"], kept["plan"]
    if recipe(config) != recipe(with_settings(preset(DEFAULT_MODEL), list(settings))):
        wanted = f"today's default ({DEFAULT_MODEL})" + (f" with {' '.join(settings)}" if settings else "")
        raise SystemExit(f"{where}: holds a run of another recipe than {wanted}; {remedy}")
    # A plan made before plans chose a clusterer (its budget.json says nothing of it) is today's plan only where
    # today's would not choose one either.
    if "clusterer" not in plan and whitens_instead_of_refining(config, record["epochs"] * kept["train_images"]):
        raise SystemExit(
            f"{where}: planned before plans clustered long runs by {WHITENED_CLUSTERER}; today's plan would; {remedy}"
        )
    saved = BudgetPlan.from_dict(plan)
    return record | {"batch_seconds": saved.first_epoch_step_seconds or saved.speeds.train_step_seconds}


def kept_key(run_dir: Path) -> str:
    """Where ``kept`` holds a run: its set, budget and seed, as its directory under --out names them."""
    return "/".join(run_dir.parts[-3:])


def finished(run_dir: Path) -> bool:
    return (run_dir / "bench-budget.json").is_file() and (run_dir / "metrics.json").is_file()


def run_once(
    source: str,
    budget: str,
    seed: int,
    run_dir: Path,
    k: int | None,
    kept: dict,
    kept_file: Path,
    settings: Sequence[str] = (),
) -> dict:
    """One budgeted run's figures: read back from ``run_dir`` where it finished there, else from ``kept`` (under
    :func:`kept_key`), else run now (the default changed by ``settings``); ``kept`` then holds it."""
    key = kept_key(run_dir)
    if not finished(run_dir) and key in kept:
        return checked(kept[key], f"{kept_file}: {key}", f"remove it from {kept_file}", settings)
    if not finished(run_dir):
        if run_dir.exists():
            print(f"{run_dir}: stopped part-way before; starting it again", file=sys.stderr, flush=True)
            shutil.rmtree(run_dir)
        command = [sys.executable, "-m", "aeclust", "run", "--budget", budget, "--seed", str(seed)]
        command += ["--out", str(run_dir)] + (["--data", source] if source != EMBEDDED else [])
        command += ["--k", str(k)] if k is not None else []
        command += [part for setting in settings for part in ("--set", setting)]
        print("$", " ".join(command), file=sys.stderr, flush=True)
        started = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - started
        metrics = RunDir(run_dir).read_metrics()
        scores = metrics.get("train_scores", {})
        record = {
            "source": source, "budget": budget, "budget_seconds": parse_duration(budget), "seed": seed,
            "epochs": metrics["epochs"], "k": metrics["k"], "wall_seconds": wall,
            "taken_seconds": metrics["budget"]["taken_seconds"],
            "estimate_seconds": metrics["budget"]["estimate_seconds"],
            "train_accuracy": metrics.get("train_accuracy"), "nmi": scores.get("nmi"),
            "val_accuracy": metrics.get("val_accuracy"),
        }  # fmt: skip
        (run_dir / "bench-budget.json").write_text(json.dumps(record, indent=2) + "\n")
    entry = kept_run(run_dir)
    figures = checked(entry, str(run_dir), "move it away or pass another --out", settings)
    kept[key] = entry
    return figures


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: dict[str, dict[str, list[dict]]]) -> str:
    lines = [
        "| set | budget | seeds | epochs | train accuracy | per seed | NMI | a batch, s | wall s "
        "| wall / budget |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, budgets in results.items():
        for budget, records in budgets.items():
            accuracy = [r["train_accuracy"] for r in records]
            epochs = "/".join(str(r["epochs"]) for r in records)
            per_seed = " / ".join(f"{value:.3f}" for value in accuracy)
            walls = " / ".join(f"{r['wall_seconds']:.0f}" for r in records)
            batches = " / ".join(f"{r['batch_seconds']:.2f}" for r in records)
            ratios = [r["wall_seconds"] / r["budget_seconds"] for r in records]
            ratio = f"{min(ratios):.2f}" + (f"–{max(ratios):.2f}" if len(ratios) > 1 else "")
            lines.append(
                f"| {name} | {budget} | {len(records)} | {epochs} | {spread(accuracy)} | {per_seed} | "
                f"{spread([r['nmi'] for r in records])} | {batches} | {walls} | {ratio} |"
            )
    return "\n".join(lines)


def figure(results: dict[str, dict[str, list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    for name, budgets in results.items():
        minutes = [parse_duration(budget) / 60 for budget in budgets]
        means = [statistics.mean(r["train_accuracy"] for r in records) for records in budgets.values()]
        (line,) = axes.plot(minutes, means, marker="o", label=f"{name} (mean over seeds)")
        for budget, records in budgets.items():
            axes.scatter(
                [parse_duration(budget) / 60] * len(records), [r["train_accuracy"] for r in records],
                color=line.get_color(), alpha=0.4, s=14,
            )  # fmt: skip
    axes.set_xscale("log")
    budgets = sorted({budget for per_set in results.values() for budget in per_set}, key=parse_duration)
    axes.set_xticks([parse_duration(budget) / 60 for budget in budgets], budgets)
    axes.minorticks_off()
    axes.set_xlabel("budget (log scale; this project's 2-core CPU)")
    axes.set_ylabel("train accuracy")
    axes.set_title("aeclust run --budget: accuracy against the time given")
    axes.grid(alpha=0.3)
    axes.legend()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", metavar="NAME=SOURCE", help="a set to run (default: embedded)")
    parser.add_argument("--budgets", nargs="+", default=["5m", "20m", "60m", "150m"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--all-seeds-up-to", default="20m", help="longer budgets run the first seed only")
    parser.add_argument("--ten-way", metavar="SOURCE", help="also cluster this source ten ways (--k 10)")
    parser.add_argument("--ten-way-budget", default="60m")
    parser.add_argument("--only", nargs="+", metavar="NAME/BUDGET", help="run only these; read back the others")
    parser.add_argument("--read-only", action="store_true", help="run nothing; tabulate the runs that finished")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-budget"))
    parser.add_argument("--figure", type=Path, help="write accuracy against budget here (PNG)")
    parser.add_argument(
        "--kept", type=Path, default=DEFAULT_KEPT,
        help="the finished runs' figures and settings, kept in the repository: read back as finished runs",
    )  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="run a variant")
    parser.add_argument("--against", type=Path, metavar="JSON", help="print the default's kept runs beside")
    args = parser.parse_args()
    if args.set:
        try:
            with_settings(preset(DEFAULT_MODEL), args.set)  # a misspelt setting fails before any run
        except ConfigError as error:
            raise SystemExit(f"--set: {error}") from None
        if args.kept.resolve() == DEFAULT_KEPT.resolve():
            raise SystemExit(f"--set: a variant is not kept in {DEFAULT_KEPT}; pass --kept FILE of its own")
    kept = json.loads(args.kept.read_text()) if args.kept.is_file() else {}
    args.kept.parent.mkdir(parents=True, exist_ok=True)  # written after the first run: not missing hours later
    against = json.loads(args.against.read_text()) if args.against is not None else {}

    sets = dict(item.split("=", 1) for item in args.data) if args.data else {EMBEDDED: EMBEDDED}
    for budget in [*args.budgets, args.all_seeds_up_to, args.ten_way_budget]:
        parse_duration(budget)  # a typo fails before any run
    all_seeds_up_to = parse_duration(args.all_seeds_up_to)
    plan = [
        (name, source, budget, None, args.seeds if parse_duration(budget) <= all_seeds_up_to else args.seeds[:1])
        for name, source in sets.items()
        for budget in args.budgets
    ]
    if args.ten_way:
        plan.append(("cifar10 ten-way", args.ten_way, args.ten_way_budget, 10, args.seeds[:1]))

    results: dict[str, dict[str, list[dict]]] = {}
    for name, source, budget, k, seeds in plan:
        wanted = not args.read_only and (args.only is None or f"{name}/{budget}" in args.only)
        for seed in seeds:
            run_dir = args.out / name.replace(" ", "-") / budget / f"seed{seed}"
            key = kept_key(run_dir)
            if key in against:
                default = checked(against[key], f"{args.against}: {key}", f"remove it from {args.against}")
                results.setdefault(f"{name} (default)", {}).setdefault(budget, []).append(default)
            if not wanted and not finished(run_dir) and key not in kept:
                continue
            record = run_once(source, budget, seed, run_dir, k, kept, args.kept, args.set)
            write_text_atomic(args.kept, json.dumps(kept, indent=1, sort_keys=True) + "\n")  # each run, as it ends
            label = f"{name} ({' '.join(args.set)})" if args.set else name
            results.setdefault(label, {}).setdefault(budget, []).append(record)
            print(
                f"{name} {budget} seed {seed}: train {record['train_accuracy']:.3f}, {record['epochs']} epochs, "
                f"{format_duration(record['wall_seconds'])} of {budget}",
                file=sys.stderr, flush=True,
            )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    if args.figure is not None:
        figure(results, args.figure)
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
