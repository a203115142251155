"""The report: a self-contained ``index.html`` with figures, from finished runs.

The Python API behind ``aeclust report`` and ``aeclust compare``::

    from aeclust.report import build_report, compare
    build_report(["runs/baseline", "runs/improved"], "reports/both")  # from finished runs
    compare(epochs=10, out="reports/compare")  # train baseline and improved, then report both
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

DEFAULT_INDICES = (1, 2, 3, 6, 7, 9)  # the trainX images the study shows
COMPARED_MODELS = ("baseline", "improved")  # the study's two models
INDEX_FILE = "index.html"
TABLE_FILE = "table.md"  # the results table as Markdown, to quote in a note

__all__ = ["COMPARED_MODELS", "DEFAULT_INDICES", "build_report", "compare"]

if TYPE_CHECKING:
    from aeclust.report.build import build_report, compare


def __getattr__(name: str) -> Any:
    # build_report and compare import matplotlib (about a second); loading them on first use keeps that cost
    # off every other `aeclust` command, whose parser registers `report` and `compare` from this package.
    if name in ("build_report", "compare"):
        from aeclust.report import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
