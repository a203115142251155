"""aeclust: group images into clusters with no labels, by autoencoder latents.

The Python API the CLI is built on::

    from aeclust import preset, run
    result = run(preset("improved"), "runs/mine")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Names are imported on first use, so `aeclust --help` and bad-input errors do not wait for torch to load.
_EXPORTS = {
    "ClusterConfig": "aeclust.config",
    "ModelConfig": "aeclust.config",
    "RunConfig": "aeclust.config",
    "TrainConfig": "aeclust.config",
    "ImageSet": "aeclust.data",
    "load_images": "aeclust.data",
    "RunResult": "aeclust.pipeline.run",
    "run": "aeclust.pipeline.run",
    "recluster": "aeclust.pipeline.run",
    "MODELS": "aeclust.presets",
    "refine_clusters": "aeclust.refine.scan",
    "preset": "aeclust.presets",
    "predict": "aeclust.pipeline.predict",
    "RunDir": "aeclust.pipeline.rundir",
    "load_model": "aeclust.encoders.autoencoder",
    "Encoder": "aeclust.encoders.base",
    "AutoencoderEncoder": "aeclust.encoders.autoencoder",
    "ClusteringStage": "aeclust.cluster.stage",
    "FeatureRefiner": "aeclust.refine.head",
    "Pipeline": "aeclust.pipeline.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aeclust' has no attribute {name!r}")
