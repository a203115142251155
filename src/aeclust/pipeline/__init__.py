"""The stages composed into runs: :class:`~aeclust.pipeline.pipeline.Pipeline` (encoder → clustering → refiner),
``run`` and ``recluster`` (:mod:`.run`), ``predict`` (:mod:`.predict`), and the run directory they write
(:mod:`.rundir`)."""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, so that reading a run directory (aeclust.pipeline.rundir) does not wait for torch.
_EXPORTS = {
    "RunResult": "aeclust.pipeline.run", "run": "aeclust.pipeline.run", "recluster": "aeclust.pipeline.run",
    "predict": "aeclust.pipeline.predict", "Pipeline": "aeclust.pipeline.pipeline",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aeclust.pipeline' has no attribute {name!r}")
