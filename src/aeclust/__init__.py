"""aeclust: group images into clusters with no labels, by autoencoder latents.

The Python API the CLI is built on::

    from aeclust import load_images, preset, run
    result = run(preset("improved"), "runs/mine")
"""

from aeclust.config import ClusterConfig, ModelConfig, RunConfig, TrainConfig
from aeclust.data import ImageSet, load_images
from aeclust.pipeline import RunResult, run
from aeclust.presets import MODELS, preset

__version__ = "0.1.0"

__all__ = [
    "MODELS",
    "ClusterConfig",
    "ImageSet",
    "ModelConfig",
    "RunConfig",
    "RunResult",
    "TrainConfig",
    "load_images",
    "preset",
    "run",
]
