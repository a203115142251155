"""Neighbour consistency (SCAN, Van Gansbeke et al., 2020): an image and one of its nearest neighbours, each
augmented, must fall into the same cluster, while a balance term keeps every cluster in use."""

from __future__ import annotations

import torch
from torch import nn

from aeclust.runtime.engine import Engine


def scan_loss(
    anchor_logits: torch.Tensor,
    partner_logits: torch.Tensor,
    entropy_weight: float,
    target_shares: torch.Tensor | None = None,
    engine: Engine | None = None,
) -> torch.Tensor:
    """−log ⟨p(anchor), p(neighbour)⟩, plus a balance term on the batch's mean cluster share.

    Without ``target_shares`` the balance term is SCAN's: minus entropy_weight × the entropy of the mean share,
    which is smallest when every cluster takes 1/k of the images. With them it is entropy_weight × KL(mean share ‖
    target): it keeps every cluster in use just as well, but holds the clusters at the target's (possibly uneven)
    sizes instead of pulling them all towards 1/k. With uniform targets the two differ only by the constant log k.
    Under torchrun the mean share is over every process's anchors, as in one large batch.
    """
    anchor, partner = anchor_logits.float().softmax(1), partner_logits.float().softmax(1)
    consistency = -torch.log((anchor * partner).sum(1).clamp_min(1e-8)).mean()
    everyone = engine.gather_with_grad(anchor) if engine is not None else anchor
    share = everyone.mean(0)
    entropy = -(share * torch.log(share.clamp_min(1e-8))).sum()
    if target_shares is None:
        return consistency - entropy_weight * entropy
    cross_entropy = -(share * torch.log(target_shares.to(share.device))).sum()
    return consistency + entropy_weight * (cross_entropy - entropy)


class NeighbourConsistencyObjective(nn.Module):
    """SCAN's loss on the cluster head's logits for a batch of anchors and, in the same order, their partners.

    The head is the refinement's cluster head, which self-labelling trains next, so the refiner owns it.
    """

    def __init__(
        self, entropy_weight: float = 5.0, target_shares: torch.Tensor | None = None, engine: Engine | None = None
    ) -> None:
        super().__init__()
        self.entropy_weight, self.target_shares, self.engine = entropy_weight, target_shares, engine

    def forward(self, anchor_logits: torch.Tensor, partner_logits: torch.Tensor) -> torch.Tensor:
        return scan_loss(anchor_logits, partner_logits, self.entropy_weight, self.target_shares, self.engine)
