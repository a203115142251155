"""One look for every figure: palettes for 2 to 50+ groups, class names, and figures drawn with Agg.

Figures are built as ``matplotlib.figure.Figure`` objects on an Agg canvas, never through pyplot, so making a
report changes no global matplotlib state (no backend switch, no open windows) in the caller's process.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from aeclust.runtime.io import atomic_open

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
# Ordered so the first two, used for the usual two classes, differ most in lightness too; yellow is late
# because it is hard to see on white.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
# Past the palette's last colour colours repeat, so the marker changes too.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
UNKNOWN_GREY = "#999999"
# cividis is designed to read the same with and without colour-vision deficiency.
SEQUENTIAL_MAP = "cividis"
DPI = 110


def _colormap(name: str) -> list[str]:
    return [to_hex(rgb) for rgb in matplotlib.colormaps[name].colors]


def _by_shade(colours: list[str], shades: int, keep_shades: int, keep_hues: int) -> list[str]:
    """A colormap made of hue groups (each ``shades`` shades, dark to light) reordered shade by shade.

    Consecutive indices then step to another hue rather than to a lighter shade of the same one, so clusters
    with neighbouring numbers never look alike.
    """
    hues = len(colours) // shades
    return [colours[hue * shades + shade] for shade in range(keep_shades) for hue in range(min(hues, keep_hues))]


@cache
def palette(groups: int) -> tuple[str, ...]:
    """Distinct colours for ``groups`` groups (classes or clusters), the same colour for the same index.

    Okabe-Ito up to eight groups, tab10 up to ten. tab20 comes in pairs of one hue, dark and light; taken all
    the dark ones first, its first ten colours are tab10's and neighbours differ in hue. Past twenty no palette
    keeps every pair apart, so tab20b and tab20c follow, also shade by shade: 52 colours, a hue step between any
    two consecutive ones. tab20c's lightest shade (near-white on the white page) and its greys (the colour of
    "unknown") are left out. Past 52 the colours repeat with another marker.
    """
    if groups <= len(OKABE_ITO):
        return OKABE_ITO
    if groups <= 10:
        return tuple(_colormap("tab10"))
    tab20 = _by_shade(_colormap("tab20"), shades=2, keep_shades=2, keep_hues=10)
    if groups <= 20:
        return tuple(tab20)
    tab20b = _by_shade(_colormap("tab20b"), shades=4, keep_shades=4, keep_hues=5)
    tab20c = _by_shade(_colormap("tab20c"), shades=4, keep_shades=3, keep_hues=4)
    return tuple(tab20 + tab20b + tab20c)


def colour(index: int, groups: int = len(OKABE_ITO)) -> str:
    """The colour of group ``index`` among ``groups`` groups."""
    colours = palette(groups)
    return colours[index % len(colours)]


def marker(index: int, groups: int = len(OKABE_ITO)) -> str:
    """The marker of group ``index``: the first one until the palette's colours run out, then the next."""
    return MARKERS[(index // len(palette(groups))) % len(MARKERS)]


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
