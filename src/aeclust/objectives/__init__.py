"""The objectives a model learns by, each a small module that owns its head and returns its loss.

Training an autoencoder (:mod:`aeclust.train`) runs the self-supervised ones: reconstruction, rotation and
contrastive views, assembled by :func:`build_objectives` from a model's settings. Refinement
(:mod:`aeclust.refine`) runs the clustering ones: neighbour consistency, then self-labelling.
"""

from aeclust.objectives.contrastive import ContrastiveObjective, nt_xent_loss
from aeclust.objectives.neighbours import NeighbourConsistencyObjective, scan_loss
from aeclust.objectives.reconstruction import ReconstructionObjective
from aeclust.objectives.rotation import RotationObjective
from aeclust.objectives.self_label import SelfLabellingObjective, self_label_weights
from aeclust.objectives.views import TrainingViews, draw_training_views
from aeclust.objectives.registry import OBJECTIVES, build_objectives

__all__ = [
    "OBJECTIVES", "ContrastiveObjective", "NeighbourConsistencyObjective", "ReconstructionObjective",
    "RotationObjective", "SelfLabellingObjective", "TrainingViews", "build_objectives", "draw_training_views",
    "nt_xent_loss", "scan_loss", "self_label_weights",
]  # fmt: skip
