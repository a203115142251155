"""The report's results table: one row per run, as text cells shared by the HTML page and the terminal."""

from __future__ import annotations

import math
from collections.abc import Sequence

from aeclust.report.runs import FinishedRun

COLUMNS = ("model", "val MSE", "val accuracy", "train accuracy", "training time")
MISSING = "—"


def format_seconds(seconds: float) -> str:
    """A duration as a person reads it: ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds is None or math.isnan(seconds):
        return MISSING
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _number(metrics: dict, key: str, digits: int) -> str:
    value = metrics.get(key)
    return MISSING if value is None else f"{value:.{digits}f}"


def _accuracy(metrics: dict, key: str) -> str:
    """The accuracy, and what it was before refinement when the run refined its clusters."""
    cell = _number(metrics, key, 4)
    before = metrics.get(f"{key}_before_refine")
    return cell if before is None or cell == MISSING else f"{cell} ({before:.4f} before refinement)"


def table_rows(runs: Sequence[FinishedRun]) -> list[list[str]]:
    """Cells in the order of :data:`COLUMNS`; training time is the training steps alone, the whole run in brackets."""
    rows = []
    for run in runs:
        timings = run.metrics.get("timings", {})
        training = format_seconds(timings.get("train_seconds", math.nan))
        total = timings.get("total_seconds")
        if total is not None:
            training += f" ({format_seconds(total)} in all)"
        rows.append(
            [
                run.label,
                _number(run.metrics, "val_mse", 4),
                _accuracy(run.metrics, "val_accuracy"),
                _accuracy(run.metrics, "train_accuracy"),
                training,
            ]
        )
    return rows


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """The table as Markdown, so it reads in a terminal and pastes into a note."""
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows)]
    lines = [COLUMNS, ["-" * width for width in widths], *rows]
    return "\n".join("| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |" for line in lines)
