"""Durations as users write them (``90s``, ``5m``, ``1h30m``)."""

from __future__ import annotations

import re

from aeclust.errors import ConfigError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_duration(text: str) -> float:
    """Seconds in a duration as the user writes it: ``90s``, ``5m``, ``2h``, ``1h30m``."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(number + unit for number, unit in parts) != cleaned:
        raise ConfigError(f"budget: expected a duration such as 90s, 5m, 1h30m or 2h, found {text!r}")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ConfigError(f"budget: expected a duration longer than nothing, found {text!r}")
    return seconds
