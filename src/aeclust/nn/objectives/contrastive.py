"""Contrastive views (SimCLR, Chen et al., 2020): the two views of an image must find each other among every
other view of the batch, through a projection head on the pooled latent; optionally (MoCo v2, Chen et al., 2020)
among the views as a slowly moving momentum copy of the encoder and head sees them."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from aeclust.nn.models import ProjectionHead
from aeclust.nn.objectives.views import TrainingViews
from aeclust.runtime.engine import Engine


def nt_xent_loss(
    first: torch.Tensor,
    second: torch.Tensor,
    temperature: float = 0.5,
    engine: Engine | None = None,
    keys: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: row i of ``first`` and of ``second`` are two views of one image.

    Each view must pick out its partner among the other 2N − 1 embeddings of the batch. Under torchrun (``engine``
    distributed), every process's views are gathered with their gradients, so each process's views are told apart
    from all of them, as in one large batch.

    With ``keys`` (the same two views as a momentum copy of the model embeds them, no gradient) each view looks for
    its partner's key among the 2N − 1 other keys instead (its own view's key aside, which is all but itself).
    """
    n = len(first)
    embeddings = F.normalize(torch.cat([first, second]).float(), dim=1)
    targets = embeddings if keys is None else F.normalize(torch.cat(keys).float(), dim=1).detach()
    if engine is None or not engine.distributed:
        everyone, offset, total = targets, 0, n
    else:
        sizes = engine.sizes(n)
        gather = engine.gather_with_grad if keys is None else engine.gather  # keys carry no gradient back
        gathered = [gather(part, sizes) for part in (targets[:n], targets[n:])]
        everyone, offset, total = torch.cat(gathered), sum(sizes[: engine.rank]), sum(sizes)
    similarity = embeddings @ everyone.T / temperature
    rows = torch.arange(n, device=embeddings.device)
    own = torch.cat([rows + offset, rows + offset + total])  # each view's own column: never its own partner
    similarity[torch.arange(2 * n, device=embeddings.device), own] = float("-inf")
    partners = torch.cat([rows + offset + total, rows + offset])
    return F.cross_entropy(similarity, partners)


class MomentumTarget(nn.Module):
    """A copy of an encoder and its projection head whose weights follow the trained ones slowly: each
    :meth:`follow` keeps ``momentum`` of its own weights and takes the rest from theirs. It is never trained
    itself; its normalisation layers keep their own statistics, from the batches it encodes."""

    def __init__(self, encoder: nn.Module, head: nn.Module, momentum: float) -> None:
        super().__init__()
        self.encoder, self.head = copy.deepcopy(encoder), copy.deepcopy(head)
        self.requires_grad_(False)
        self.momentum = momentum

    @torch.no_grad()
    def follow(self, encoder: nn.Module, head: nn.Module) -> None:
        ours = [*self.encoder.parameters(), *self.head.parameters()]
        theirs = [*encoder.parameters(), *head.parameters()]
        for mine, trained in zip(ours, theirs, strict=True):
            mine.lerp_(trained, 1 - self.momentum)

    @torch.no_grad()
    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(views))


class ContrastiveObjective(nn.Module):
    """weight × NT-Xent between the two full views of each image; multi-crop's small views, if any, must each find
    both full views of their image too, and every pairing counts alike. With ``target`` (a momentum copy of the
    encoder, :class:`MomentumTarget`) the views look for their partners as the copy encodes them."""

    def __init__(
        self,
        channels: int,
        weight: float = 1.0,
        temperature: float = 0.5,
        engine: Engine | None = None,
        encoder: nn.Module | None = None,
        momentum: float = 0.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: expected > 0")
        self.head = ProjectionHead(channels, channels)
        self.weight, self.temperature, self.engine = weight, temperature, engine
        self.target = MomentumTarget(encoder, self.head, momentum) if encoder is not None and momentum > 0 else None

    def forward(self, views: TrainingViews) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = views.count
        projected = self.head(views.latent)
        full = [projected[:n], projected[n:]]
        if self.target is not None:
            # Moved towards the weights the last optimizer step made, before they encode this step's partners.
            self.target.follow(views.autoencoder.encoder, self.head)
            keys = self.target(views.inputs)
            return self.weight * nt_xent_loss(*full, self.temperature, self.engine, (keys[:n], keys[n:])), {}
        pairs = [(full[0], full[1])]
        if views.small_latents is not None:
            pairs += [(small, view) for small in self.head(views.small_latents).split(n) for view in full]
        loss = sum(nt_xent_loss(a, b, self.temperature, self.engine) for a, b in pairs) / len(pairs)
        return self.weight * loss, {}
