"""Self-labelling (SCAN's last step): the images each cluster holds most confidently become targets for a
cross-entropy on strongly augmented views of themselves."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def self_label_weights(sizes: torch.Tensor, target_shares: torch.Tensor | None) -> torch.Tensor:
    """Per-cluster weights of the self-labelling loss: each cluster's target share (1/k without targets) over its
    share of the confident images, so a cluster holding more than its share weighs less; 0 for an empty one."""
    wanted = torch.full((len(sizes),), 1 / len(sizes)) if target_shares is None else target_shares
    return torch.where(sizes > 0, wanted * sizes.sum() / sizes.clamp_min(1), 0.0).float()


class SelfLabellingObjective(nn.Module):
    """Weighted cross-entropy of the cluster head's logits towards each confident image's cluster.

    Each cluster's term is weighted by its target share over its share of the confident images
    (:func:`self_label_weights`), so that a cluster grown past its size does not swallow the rest (as in SCAN).
    """

    def __init__(self, confident_sizes: torch.Tensor, target_shares: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weights", self_label_weights(confident_sizes, target_shares), persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets, weight=self.weights.to(logits.device))
