"""Contrastive views (SimCLR, Chen et al., 2020): the two views of an image must find each other among every
other view of the batch, through a projection head on the pooled latent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aeclust.engine import Engine
from aeclust.models import ProjectionHead
from aeclust.objectives.views import TrainingViews


def nt_xent_loss(
    first: torch.Tensor, second: torch.Tensor, temperature: float = 0.5, engine: Engine | None = None
) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: row i of ``first`` and of ``second`` are two views of one image.

    Each view must pick out its partner among the other 2N − 1 embeddings of the batch. Under torchrun (``engine``
    distributed), every process's views are gathered with their gradients, so each process's views are told apart
    from all of them, as in one large batch.
    """
    n = len(first)
    embeddings = F.normalize(torch.cat([first, second]).float(), dim=1)
    if engine is None or not engine.distributed:
        everyone, offset, total = embeddings, 0, n
    else:
        sizes = engine.sizes(n)
        gathered_first = engine.gather_with_grad(embeddings[:n], sizes)
        gathered_second = engine.gather_with_grad(embeddings[n:], sizes)
        everyone, offset, total = torch.cat([gathered_first, gathered_second]), sum(sizes[: engine.rank]), sum(sizes)
    similarity = embeddings @ everyone.T / temperature
    rows = torch.arange(n, device=embeddings.device)
    own = torch.cat([rows + offset, rows + offset + total])  # each view's own column: never its own partner
    similarity[torch.arange(2 * n, device=embeddings.device), own] = float("-inf")
    partners = torch.cat([rows + offset + total, rows + offset])
    return F.cross_entropy(similarity, partners)


class ContrastiveObjective(nn.Module):
    """weight × NT-Xent between the two full views of each image; multi-crop's small views, if any, must each find
    both full views of their image too, and every pairing counts alike."""

    def __init__(
        self,
        channels: int,
        weight: float = 1.0,
        temperature: float = 0.5,
        engine: Engine | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: expected > 0")
        self.head = ProjectionHead(channels, channels)
        self.weight, self.temperature, self.engine = weight, temperature, engine

    def forward(self, views: TrainingViews) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = views.count
        projected = self.head(views.latent)
        full = [projected[:n], projected[n:]]
        pairs = [(full[0], full[1])]
        if views.small_latents is not None:
            pairs += [(small, view) for small in self.head(views.small_latents).split(n) for view in full]
        loss = sum(nt_xent_loss(a, b, self.temperature, self.engine) for a, b in pairs) / len(pairs)
        return self.weight * loss, {}
