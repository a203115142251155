"""Losses of the self-supervised objectives, one function each."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent_loss(first: torch.Tensor, second: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: row i of ``first`` and of ``second`` are two views of one image.

    Each view must pick out its partner among the other 2N − 1 embeddings of the batch.
    """
    n = len(first)
    embeddings = F.normalize(torch.cat([first, second]), dim=1)
    similarity = embeddings @ embeddings.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(similarity, partners)
