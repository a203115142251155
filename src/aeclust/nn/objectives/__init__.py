"""The objectives a model learns by, each a small module that owns its head and returns its loss.

Training an autoencoder (:mod:`aeclust.encoders.autoencoder`) runs the self-supervised ones: reconstruction, rotation
and contrastive views, assembled by :func:`build_objectives` from a model's settings. Refinement
(:mod:`aeclust.refine.scan`) runs the clustering ones: neighbour consistency, then self-labelling.
"""

from aeclust.nn.objectives.contrastive import ContrastiveObjective, nt_xent_loss
from aeclust.nn.objectives.neighbours import NeighbourConsistencyObjective, scan_loss
from aeclust.nn.objectives.reconstruction import ReconstructionObjective
from aeclust.nn.objectives.registry import OBJECTIVES, build_objectives
from aeclust.nn.objectives.rotation import RotationObjective
from aeclust.nn.objectives.self_label import SelfLabellingObjective, self_label_weights
from aeclust.nn.objectives.views import TrainingViews, draw_training_views

__all__ = [
    "OBJECTIVES", "ContrastiveObjective", "NeighbourConsistencyObjective", "ReconstructionObjective",
    "RotationObjective", "SelfLabellingObjective", "TrainingViews", "build_objectives", "draw_training_views",
    "nt_xent_loss", "scan_loss", "self_label_weights",
]  # fmt: skip
