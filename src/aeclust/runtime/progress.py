"""Progress inside long stages: a tqdm bar on a terminal; plain lines in a log (how far, how fast, how long left).

tqdm alone shows nothing when the output is a file (or redraws one line with carriage returns), so a run sent to a
log would say nothing for an hour-long epoch. Here, when standard error is not a terminal, a stage that lasts
longer than :data:`LOG_INTERVAL` seconds prints one line each interval.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

LOG_INTERVAL = 30.0  # seconds between two lines in a log
Item = TypeVar("Item")


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")


def format_duration(seconds: float) -> str:
    """``1h05m``, ``4m30s``, ``45s``."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Counts work done towards ``total`` (None: unknown) and shows it, on the main process only."""

    def __init__(self, total: int | None, description: str, unit: str, enabled: bool = True) -> None:
        self.total, self.description, self.unit = total, description, unit
        self.done = 0
        self.started = self.last_line = time.perf_counter()
        self.postfix = ""
        on_terminal = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=description, unit=unit, leave=False) if enabled and on_terminal else None
        self.lines = enabled and not on_terminal

    @property
    def shown(self) -> bool:
        return self.bar is not None

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif self.lines and time.perf_counter() - self.last_line >= LOG_INTERVAL:
            self.last_line = time.perf_counter()
            print(f"aeclust: {self.line()}", file=sys.stderr, flush=True)

    def line(self) -> str:
        """``refine: 1,200 of 4,000 batches (30 %), 4.1 batches/s, about 11m23s left``."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / elapsed
        units = _plural(self.unit)
        text = f"{self.description}: {self.done:,}"
        if self.total:
            text += f" of {self.total:,} {units} ({100 * self.done / self.total:.0f} %)"
        else:
            text += f" {units}"
        text += f", {rate:.1f} {units}/s"
        if self.total and rate > 0:
            text += f", about {format_duration((self.total - self.done) / rate)} left"
        return text + (f", {self.postfix}" if self.postfix else "")

    def note(self, **values: str) -> None:
        """Values shown beside the count (the running loss, say)."""
        self.postfix = ", ".join(f"{name} {value}" for name, value in values.items())
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress(
    items: Iterable[Item], total: int | None, description: str, unit: str, enabled: bool = True, counts=None
) -> Iterator[Item]:
    """``items``, counted as they pass (each by ``counts(item)``, else 1)."""
    shown = Progress(total, description, unit, enabled)
    try:
        for item in items:
            yield item
            shown.update(1 if counts is None else counts(item))
    finally:
        shown.close()


def log(message: str) -> None:
    """A progress line on stderr, from the main process only (under torchrun every process would repeat it)."""
    from aeclust.runtime.engine import torchrun_world  # here: reading images shows progress without torch

    if torchrun_world()[0] == 0:
        print(message, file=sys.stderr, flush=True)
