"""One look for every figure: the Okabe-Ito palette, class names, and figures drawn with Agg.

Figures are built as ``matplotlib.figure.Figure`` objects on an Agg canvas, never through pyplot, so making a
report changes no global matplotlib state (no backend switch, no open windows) in the caller's process.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aeclust.io import atomic_open

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
# Ordered so the first two, used for the usual two classes, differ most in lightness too; yellow is late
# because it is hard to see on white.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
# Past eight groups colours repeat, so the marker changes too.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
UNKNOWN_GREY = "#999999"
# cividis is designed to read the same with and without colour-vision deficiency.
SEQUENTIAL_MAP = "cividis"
DPI = 110


def colour(index: int) -> str:
    return OKABE_ITO[index % len(OKABE_ITO)]


def marker(index: int) -> str:
    return MARKERS[(index // len(OKABE_ITO)) % len(MARKERS)]


def class_name(names: list[str] | None, label: int) -> str:
    """A class's name when known, else its number."""
    if names is not None and 0 <= label < len(names):
        return str(names[label])
    return str(label)


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG that appears whole or not at all."""
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=DPI, facecolor="white")
    return path
